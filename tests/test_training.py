"""Tiny real trainings: a few labelled crops, the trainer with each loss term, resume,
weight averaging, distillation, soups, the release's pieces and the model card.

Every test here that trains a network is marked ``training``: ``pytest -m "not training"``
leaves them out for a quick run; ``.ci/run`` runs them all."""

import csv
from pathlib import Path

import numpy as np
import torch

import pytest

from facegate.images import load_rgb
from facegate.models import load_member
from facegate.spec import ScorerSpec
from train.data import load_crops, read_csv, split
from train.degradations import gaussian_blur
from train.fit import FitConfig, fit
from train.losses import MSECorrLoss
from train.recipe import SHIPPED, Optimiser, Phase, Recipe, Terms, parse_stages
from train.trainer import predict

training = pytest.mark.training


def phase(stages: str = "48:1:2", batch: int = 8, lr: float | None = None, **changes) -> Phase:
    """A small phase: ``stages``, batches of ``batch``, one learning rate for head and
    backbone when ``lr`` is given (else the optimiser's defaults), other Phase fields as given."""
    optimiser = Optimiser(batch_size=batch) if lr is None else Optimiser(batch_size=batch, lr_head=lr, lr_backbone=lr)
    return Phase(stages=parse_stages(stages), optimiser=optimiser, **changes)


def quiet(*_args):
    pass


def make_dataset(tmp_path, fixtures):
    """Face crops from the fixture photos, sharp (label 0.9) and blurred at growing
    strength (labels falling with blur), as a path,score,identity,source,degradation CSV (the
    sharp crop of each photo is the reference of the pairwise and monotone terms), with the
    columns the score scale is fitted on (match_hard, references)."""
    from facegate.detection import MTCNNDetector, choose_primary

    spec = ScorerSpec(input_size=48)
    det = MTCNNDetector()
    rows = []
    for n, name in enumerate(["colin_powell_1", "colin_powell_2", "tony_blair_1"]):
        rgb = load_rgb(fixtures / f"{name}.jpg")
        face = choose_primary(det.detect(rgb), rgb.shape)
        for k, sigma in enumerate([0, 1.5, 3, 5]):
            img = rgb if sigma == 0 else gaussian_blur(rgb, sigma)
            path = tmp_path / f"{name}_{k}.png"
            from PIL import Image

            Image.fromarray(spec.crop(img, face.landmarks, 48)).save(path)
            rows.append({"path": path.name, "score": 0.9 - 0.15 * sigma, "identity": f"person{n}",
                         "source": name, "degradation": "none" if sigma == 0 else "blur",
                         "match_hard": 1.0 if sigma < 3 else 0.0, "references": 2})
    csv_path = tmp_path / "labels.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "score", "identity", "source", "degradation", "match_hard",
                                                "references"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def test_identity_split_keeps_people_apart(tmp_path, fixtures):
    samples = read_csv(make_dataset(tmp_path, fixtures))
    train, val = split(samples, 0.34, seed=1)
    assert {samples[i].identity for i in train}.isdisjoint({samples[i].identity for i in val})
    assert len(train) + len(val) == len(samples)


@training
def test_tiny_progressive_training_lowers_the_loss(tmp_path, fixtures):
    csv_path = make_dataset(tmp_path, fixtures)
    spec = ScorerSpec(input_size=48)
    samples = read_csv(csv_path)
    crops, _ = load_crops(samples, spec)
    target = torch.tensor([s.score for s in samples])
    torch.manual_seed(0)
    from facegate.models import build_member

    untrained = build_member("mobilenet_v3_small")
    loss_fn = MSECorrLoss(alpha=1.0)
    before = loss_fn(torch.from_numpy(predict(untrained, crops, spec)), target).item()
    result = fit(FitConfig(csv=csv_path, arch="mobilenet_v3_small", out=tmp_path / "out",
                           phase=phase("32:0.5:3,48:1:12", lr=2e-3), val_fraction=0.34, seed=0), log=quiet)
    assert [h["size"] for h in result["history"]] == [32] * 3 + [48] * 12
    assert result["history"][0]["samples"] < result["history"][-1]["samples"]  # data grows per stage
    trained = load_member(tmp_path / "out" / "mobilenet_v3_small.pt")
    # (the epoch losses of a batch of eight are mostly the noise of its correlation term:
    # the loss is measured on the whole training side instead)
    train_idx, _ = split(samples, 0.34, 0)
    after = loss_fn(torch.from_numpy(predict(trained, crops[train_idx], spec)), target[train_idx]).item()
    before_train = loss_fn(torch.from_numpy(predict(untrained, crops[train_idx], spec)), target[train_idx]).item()
    assert after < before_train, (before, before_train, after)


@training
def test_another_seed_keeps_the_validation_people(tmp_path, fixtures):
    """A rerun with another seed (initialisation, batch order) is compared on the same held-out
    people; only ``split_seed`` changes who they are."""
    csv_path = make_dataset(tmp_path, fixtures)
    samples = read_csv(csv_path)
    people = lambda seed: sorted({samples[i].identity for i in split(samples, 0.34, seed)[1]})  # noqa: E731
    other = next(s for s in range(1, 50) if people(s) != people(0))
    settings = dict(csv=csv_path, arch="mobilenet_v3_small", phase=phase("32:1:1"), val_fraction=0.34)
    held_out = {name: fit(FitConfig(out=tmp_path / name, **settings, **kw), log=quiet)["val_identities"]
                for name, kw in [("first", {}), ("seed", {"seed": other}), ("split", {"split_seed": other})]}
    assert held_out["first"] == held_out["seed"] == people(0)
    assert held_out["split"] == people(other) != people(0)


def _fixture_crops(fixtures, size=128):
    from facegate.detection import MTCNNDetector, choose_primary

    spec = ScorerSpec(input_size=size)
    det = MTCNNDetector()
    crops = []
    for name in ["colin_powell_1", "colin_powell_2", "tony_blair_1"]:
        rgb = load_rgb(fixtures / f"{name}.jpg")
        crops.append(spec.crop(rgb, choose_primary(det.detect(rgb), rgb.shape).landmarks))
    return np.stack(crops), spec


def test_worse_copies_follow_the_mix_and_lose_what_they_say(fixtures):
    import cv2

    from train.augment import worse_copies

    crops, spec = _fixture_crops(fixtures)
    sharpness = lambda imgs: [cv2.Laplacian(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for c in imgs]
    rng = np.random.default_rng(0)
    smaller = worse_copies(crops, spec.margin, rng, mix={"low_resolution": 1.0}, eyes_px=(20.0, 24.0))
    assert all(w < 0.8 * c for w, c in zip(sharpness(smaller), sharpness(crops)))
    assert np.allclose(smaller.mean(), crops.mean(), atol=3)  # resolution lost, not light
    darker = worse_copies(crops, spec.margin, rng, mix=Terms(monotone_mix=(("dark", 1.0), ("low_resolution", 0.0))).mix)
    assert (darker.reshape(3, -1).mean(1) < crops.reshape(3, -1).mean(1) - 10).all()


def test_similarity_jitter_moves_crops_slightly_and_only_when_asked():
    """The jitter re-samples about half the crops through a small similarity; at 0 the
    augmentation is the mirror and roll it was."""
    from train.augment import augment as _augment

    x = torch.rand(64, 3, 64, 64)
    plain = _augment(x, torch.Generator().manual_seed(0))
    again = _augment(x, torch.Generator().manual_seed(0), 0.0)
    assert torch.equal(plain, again)
    gen = torch.Generator().manual_seed(0)
    jittered = _augment(x, gen, 0.02)
    assert jittered.shape == x.shape and torch.isfinite(jittered).all()
    # same flips and roll drawn first, then some crops re-sampled
    moved = (jittered - plain).abs().flatten(1).mean(1) > 1e-6
    assert 16 <= int(moved.sum()) <= 48
    # small: a smooth image barely changes
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = (yy + xx).expand(64, 3, 64, 64) / 2
    out = _augment(smooth.clone(), torch.Generator().manual_seed(1), 0.02)
    ref = _augment(smooth.clone(), torch.Generator().manual_seed(1))
    assert (out - ref).abs().mean() < 0.03


def test_the_copies_only_term_moves_copies_and_never_their_photos():
    from train.terms import monotone_term

    for copies_only in (False, True):
        photo = torch.tensor([0.50, 0.80], requires_grad=True)
        copy = torch.tensor([0.55, 0.70], requires_grad=True)  # the first copy outscores its photo
        monotone_term(photo, copy, 0.02, copies_only).backward()
        assert copy.grad[0] > 0 and copy.grad[1] == 0  # only the violating pair pushes its copy down
        assert (photo.grad is None or not photo.grad.any()) if copies_only else photo.grad[0] < 0


def test_mix_names_must_be_known():
    assert SHIPPED.with_setting("resolution.terms.monotone_mix", "dark:1,low_resolution:3").phase(
        "resolution").terms.mix == {"dark": 1.0, "low_resolution": 3.0}
    with pytest.raises(ValueError, match="lowres"):
        SHIPPED.with_setting("resolution.terms.monotone_mix", "lowres:2")
    with pytest.raises(ValueError, match="more than 0"):
        Terms(monotone_mix=(("dark", 0.0),))


@training
def test_fine_tuning_with_worse_copies_records_order_accuracy(tmp_path, fixtures):
    """The on-the-fly term trains end to end: every epoch measures how often a validation
    photo outscores a worse copy of itself, with copies drawn from the configured mix."""
    import csv as csv_module

    csv_path = make_dataset(tmp_path, fixtures)
    rows = list(csv_module.DictReader(csv_path.open()))
    for row in rows:  # the sharp crop of each photo is the reference of its blurred copies
        name, k = row["path"].rsplit("_", 1)
        row["group"], row["reference"] = name, "1" if k.startswith("0") else "0"
    with csv_path.open("w", newline="") as fh:
        writer = csv_module.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    terms = Terms(rank=1.0, margin=0.02, monotone=1.0, monotone_mix=(("low_resolution", 3.0), ("dark", 1.0)),
                  monotone_eyes=(14.0, 30.0))
    result = fit(FitConfig(csv=csv_path, arch="mobilenet_v3_small", out=tmp_path / "out", val_fraction=0.34, seed=0,
                           phase=phase("48:1:2", terms=terms, select="srcc+order")), log=quiet)
    assert all(0.0 <= h["order"] <= 1.0 for h in result["history"])
    assert all(np.isfinite(h["loss"]) for h in result["history"])
    assert "order" in result["best"]


@training
def test_an_interrupted_training_carries_on_to_the_same_weights(tmp_path, fixtures):
    """Stopped after 3 of 5 epochs (mid-stage, and with the monotone term drawing random
    copies) and run again with the same settings: the same history and weights as one run."""
    csv_path = make_dataset(tmp_path, fixtures)
    torch.set_num_threads(1)
    settings = dict(csv=csv_path, arch="mobilenet_v3_small", val_fraction=0.34, seed=2, margin=0.0,
                    phase=phase("32:0.5:2,48:1:3", batch=6, lr=2e-3, terms=Terms(monotone=0.5)))
    whole = fit(FitConfig(out=tmp_path / "whole", **settings), log=quiet)
    first = fit(FitConfig(out=tmp_path / "parts", stop_after_epochs=3, **settings), log=quiet)
    assert first["stopped"] and len(first["history"]) == 3
    assert (tmp_path / "parts" / "mobilenet_v3_small.resume.pt").is_file()
    told = []
    rest = fit(FitConfig(out=tmp_path / "parts", **settings), log=told.append)
    assert any("resuming after stage 2 epoch 1" in line for line in told)
    assert [h["loss"] for h in rest["history"]] == [h["loss"] for h in whole["history"]]
    a, b = (torch.load(tmp_path / d / "mobilenet_v3_small.pt", weights_only=True)["state_dict"]
            for d in ("whole", "parts"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "parts" / "mobilenet_v3_small.resume.pt").exists()  # finished
    # the release command skips a member finished with these settings, and only then
    import json
    from dataclasses import replace

    from train.release import finished

    assert finished(FitConfig(out=tmp_path / "parts", threads=2, **settings))
    assert not finished(FitConfig(out=tmp_path / "parts", **{**settings, "seed": 3}))
    # the same run reached through links (a work folder that links another's) is still finished
    (tmp_path / "linked").symlink_to(tmp_path / "parts")
    (tmp_path / "data_link").symlink_to(Path(settings["csv"]).parent)
    assert finished(FitConfig(out=tmp_path / "linked", **{**settings, "csv": tmp_path / "data_link" / Path(settings["csv"]).name}))
    history = tmp_path / "parts" / "mobilenet_v3_small.history.json"
    # a record made before a setting existed holds none for it: it stands for the default
    recorded = json.loads(history.read_text())
    del recorded["fingerprint"]["phase"]["jitter"], recorded["fingerprint"]["phase"]["terms"]["copies_only"]
    history.write_text(json.dumps(recorded))
    assert finished(FitConfig(out=tmp_path / "parts", **settings))
    jittered = replace(settings["phase"], jitter=0.02)
    assert not finished(FitConfig(out=tmp_path / "parts", **{**settings, "phase": jittered}))
    # other settings do not silently resume someone else's run
    fit(FitConfig(out=tmp_path / "other", stop_after_epochs=1, **settings), log=quiet)
    changed = {**settings, "phase": settings["phase"].with_setting("optimiser.lr_head", "1e-3")}
    with pytest.raises(ValueError, match="other settings"):
        fit(FitConfig(out=tmp_path / "other", **changed), log=quiet)


@training
def test_a_weight_averaged_training_keeps_the_average_and_beside_it_the_run_without_one(tmp_path, fixtures):
    """Phase.ema validates and keeps a moving average of the weights; the training steps are those
    of the run without it, whose best is kept as <arch>.raw.pt (the same file that run keeps);
    stopped and run again, it carries the average on to the same weights."""
    from dataclasses import replace

    from train.averaging import WeightAverage

    csv_path = make_dataset(tmp_path, fixtures)
    torch.set_num_threads(1)
    plain_phase = phase("48:1:3", batch=6, lr=2e-3, terms=Terms(monotone=0.5))
    ema = replace(plain_phase, ema=0.9)
    settings = dict(csv=csv_path, arch="mobilenet_v3_small", val_fraction=0.34, seed=1, margin=0.0)
    plain = fit(FitConfig(out=tmp_path / "plain", phase=plain_phase, **settings), log=quiet)
    averaged = fit(FitConfig(out=tmp_path / "ema", phase=ema, **settings), log=quiet)
    assert [h["loss"] for h in averaged["history"]] == [h["loss"] for h in plain["history"]]
    assert [h["raw_srcc"] for h in averaged["history"]] == [h["srcc"] for h in plain["history"]]

    def weights(folder, name="mobilenet_v3_small.pt"):
        return torch.load(tmp_path / folder / name, weights_only=True)["state_dict"]

    raw, kept, without = weights("ema", "mobilenet_v3_small.raw.pt"), weights("ema"), weights("plain")
    assert all(torch.equal(raw[k], without[k]) for k in raw)
    assert not all(torch.equal(kept[k], raw[k]) for k in raw)
    assert load_member(tmp_path / "ema" / "mobilenet_v3_small.pt", "mobilenet_v3_small") is not None
    # interrupted after one epoch and run again: the average carries on
    fit(FitConfig(out=tmp_path / "parts", phase=ema, stop_after_epochs=1, **settings), log=quiet)
    fit(FitConfig(out=tmp_path / "parts", phase=ema, **settings), log=quiet)
    resumed = weights("parts")
    assert all(torch.equal(resumed[k], kept[k]) for k in kept)
    # the average itself: ramped decay, batch counters copied, nonsense decays refused
    net = torch.nn.BatchNorm1d(2)
    average = WeightAverage(net, 0.99)
    with torch.no_grad():
        net.weight.fill_(3.0)
    net.num_batches_tracked.fill_(5)
    average.update(net)  # first step: decay min(0.99, 2/11)
    assert torch.allclose(average.net.weight, torch.full((2,), 1.0 + (3.0 - 1.0) * (1 - 2 / 11)))
    assert int(average.net.num_batches_tracked) == 5
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            WeightAverage(net, bad)


@training
def test_training_on_a_gpu_that_is_not_there_says_so(tmp_path, fixtures):
    """--device cuda without a GPU stops with the reason; --device auto trains on the CPU."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal cannot be seen here")
    csv_path = make_dataset(tmp_path, fixtures)
    settings = dict(csv=csv_path, arch="mobilenet_v3_small", phase=phase("32:1:1"))
    with pytest.raises(RuntimeError, match="no GPU"):
        fit(FitConfig(out=tmp_path / "cuda", device="cuda", **settings), log=quiet)
    told = []
    fit(FitConfig(out=tmp_path / "auto", device="auto", **settings), log=told.append)
    assert "on cpu" in told[0]


@training
def test_distilled_backbone_learns_the_recognizer_and_starts_a_fit(tmp_path, fixtures, shared):
    """train.distill: the teacher's targets do not change under the mirror (the augmentation
    keeps its target), the student moves toward them, and the backbone it writes is what
    train.fit --pretrained-backbone starts from."""
    from facegate.models import build_member, load_backbone_weights, to_tensor
    from facegate.recognition import MobileFaceNetRecognizer
    from train.distill import DistillConfig, distill, teacher_targets

    csv_path = make_dataset(tmp_path, fixtures)
    spec = ScorerSpec(input_size=48)  # make_dataset's framing
    crops, _ = load_crops(read_csv(csv_path), spec)
    teacher = MobileFaceNetRecognizer(str(shared / "models" / "mobilefacenet_casia.ckpt"))
    targets = teacher_targets(crops, spec, teacher)
    mirrored = teacher_targets(np.ascontiguousarray(crops[:, :, ::-1]), spec, teacher)
    assert np.allclose(np.linalg.norm(targets, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(targets * mirrored, 1)) > 0.95  # the templates are nearly symmetric
    # the same person's sharp photos agree more than two people's: the targets carry identity
    assert targets[0] @ targets[4] > targets[0] @ targets[8]

    out = tmp_path / "distilled"
    cfg = DistillConfig(csv=csv_path, recognizer=shared / "models" / "mobilefacenet_casia.ckpt",
                        arch="mobilenet_v3_small", out=out, size=48, epochs=12, batch_size=8,
                        lr=3e-3, val_fraction=0.34)
    history = distill(cfg, log=quiet)["history"]
    assert len(history) == 12
    assert np.mean([h["loss"] for h in history[-3:]]) < np.mean([h["loss"] for h in history[:3]])

    net = build_member("mobilenet_v3_small")
    load_backbone_weights(net, str(out / "mobilenet_v3_small.backbone.pt"))
    student = torch.load(out / "mobilenet_v3_small.resume.pt", weights_only=True)["student"]
    assert all(torch.equal(v, student[f"net.features.{k}"]) for k, v in net.features.state_dict().items())
    # the same command after the end carries on from the last epoch: nothing more to train,
    # also when it names the labels through another path; other settings are refused
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    relinked = DistillConfig(**{**vars(cfg), "csv": tmp_path / "link" / csv_path.name})
    assert distill(relinked, log=quiet)["history"] == history
    with pytest.raises(ValueError, match="other settings"):
        distill(DistillConfig(**{**vars(cfg), "lr": 1e-3}), log=quiet)
    result = fit(FitConfig(csv=csv_path, arch="mobilenet_v3_small", out=tmp_path / "fit", phase=phase("48:1:1"),
                           val_fraction=0.34, pretrained_backbone=out / "mobilenet_v3_small.backbone.pt"), log=quiet)
    assert len(result["history"]) == 1

    # the teacher term: a fit that keeps it ends nearer the recognizer's view than one without
    from train.terms import TeacherTerm

    _, kept = load_crops(read_csv(csv_path), spec)
    term = TeacherTerm.load(out, "mobilenet_v3_small", kept)
    with torch.inference_mode():
        start = build_member("mobilenet_v3_small")
        load_backbone_weights(start, str(out / "mobilenet_v3_small.backbone.pt"))
        drift = {"start": float(term.distance(start.train(False).forward_features(to_tensor(spec, crops)),
                                              np.arange(len(kept))))}
    for weight in (0.0, 20.0):
        fitted = tmp_path / f"teacher_{weight}"
        taught = Phase(stages=parse_stages("48:1:4"), optimiser=Optimiser(batch_size=8, lr_backbone=1e-2),
                       terms=Terms(teacher=weight))
        fit(FitConfig(csv=csv_path, arch="mobilenet_v3_small", out=fitted, phase=taught, val_fraction=0.34,
                      pretrained_backbone=out / "mobilenet_v3_small.backbone.pt", teacher=out if weight else None),
            log=quiet)
        net = load_member(fitted / "mobilenet_v3_small.pt", "mobilenet_v3_small").train(False)
        with torch.inference_mode():
            features = net.forward_features(to_tensor(spec, crops))
            drift[weight] = float(term.distance(features, np.arange(len(kept))))
    assert drift[20.0] < min(drift[0.0], drift["start"]) - 0.05
    with pytest.raises(ValueError, match="other crops"):
        TeacherTerm.load(out, "mobilenet_v3_small", kept[:-1])
    with pytest.raises(ValueError, match="needs a train.distill folder"):
        fit(FitConfig(csv=csv_path, arch="mobilenet_v3_small", out=tmp_path / "no_teacher", val_fraction=0.34,
                      phase=phase("48:1:1", terms=Terms(teacher=1.0))), log=quiet)


def test_release_finds_each_members_backbone_or_stops_before_training(tmp_path):
    from train.release import backbone_file

    assert backbone_file(None, "mobilenet_v3_small") is None  # from scratch
    with pytest.raises(SystemExit, match="train.distill --arch mobilenet_v3_small"):
        backbone_file(tmp_path, "mobilenet_v3_small")
    (tmp_path / "mobilenet_v3_small.backbone.pt").write_bytes(b"")
    assert backbone_file(tmp_path, "mobilenet_v3_small") == tmp_path / "mobilenet_v3_small.backbone.pt"


def test_release_passes_the_teacher_term_to_its_fits_only_with_distilled_backbones(tmp_path):
    from train.release import Release

    taught = SHIPPED.with_setting("members.terms.teacher", "1")
    release = Release(taught, tmp_path, tmp_path / "work", tmp_path / "out")
    plain = release.fit_configs(SHIPPED.phase("members"), {a: {} for a in SHIPPED.members})
    assert all(c.teacher is None and c.margin == SHIPPED.spec.margin for c in plain)
    with pytest.raises(SystemExit, match="needs distilled backbones"):
        release.fit_configs(taught.phase("members"), {a: {} for a in SHIPPED.members})
    (tmp_path / "work" / "distilled").mkdir(parents=True)
    (tmp_path / "work" / "distilled" / "targets.npz").write_bytes(b"")
    configs = release.fit_configs(taught.phase("members"), {a: {} for a in SHIPPED.members})
    assert all(c.teacher == tmp_path / "work" / "distilled" and c.phase.terms.teacher == 1.0 for c in configs)


@training
def test_release_phase_zero_distills_both_members_once(tmp_path, fixtures, shared):
    """The release's phase 0 makes the teacher's targets once, distills every member's backbone
    in parallel processes, records them for the model card, and does not redo a finished one."""
    from train.release import LABELS, Release, backbone_file, distill_record

    recipe = SHIPPED.with_settings(["members.stages=48:1:1", "resolution.stages=48:1:1", "distillation.epochs=1"])
    release = Release(recipe, shared, tmp_path / "work", tmp_path / "out", jobs=2)
    (tmp_path / "work" / LABELS).mkdir(parents=True)
    csv_path = make_dataset(tmp_path / "work" / LABELS, fixtures)
    assert csv_path == release.csv
    out = release.distill({})
    assert all(backbone_file(out, a).stat().st_size > 0 for a in recipe.members)
    record = distill_record(out, recipe.members)
    assert set(record) == set(recipe.members) and all(r["epochs"] == 1 and r["size"] == 48 for r in record.values())
    made = {a: (out / f"{a}.backbone.pt").stat().st_mtime_ns for a in recipe.members}
    release.distill({})
    assert {a: (out / f"{a}.backbone.pt").stat().st_mtime_ns for a in recipe.members} == made


@training
def test_a_trained_member_packaged_alone_is_weights_the_gate_scores_with(tmp_path, fixtures):
    from facegate import Gate
    from train.package import main as package

    csv_path = make_dataset(tmp_path, fixtures)
    fit(FitConfig(csv=csv_path, arch="mobilenet_v3_small", out=tmp_path / "members", phase=phase("48:1:1"),
                  val_fraction=0.34), log=quiet)
    package([str(tmp_path / "members"), str(tmp_path / "weights"), "--csv", str(csv_path),
             "--members", "mobilenet_v3_small", "--input-size", "48"])
    gate = Gate(weights=tmp_path / "weights", threads=1)
    spec = gate.scorer.spec
    assert spec.members == ("mobilenet_v3_small",) and spec.input_size == 48 and spec.score_calibration
    # (on real data the scale has many knots and strictly monotone tails: tests/test_scale.py)
    result = gate.assess(fixtures / "colin_powell_1.jpg")
    assert result.score is not None and np.isfinite(result.score)


def test_the_consistency_view_moves_each_crop_by_whole_pixels_never_by_none():
    from train.augment import moved_by_pixels

    x = torch.rand(32, 3, 20, 20)
    moved = moved_by_pixels(x, torch.Generator().manual_seed(0), 3)
    assert moved.shape == x.shape
    shifts = []
    for i in range(len(x)):
        # the shift that explains the moved crop, found from the pixels alone
        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                 if torch.equal(moved[i, :, max(0, dy):20 + min(0, dy), max(0, dx):20 + min(0, dx)],
                                x[i, :, max(0, -dy):20 - max(0, dy), max(0, -dx):20 - max(0, dx)])]
        assert len(found) == 1 and found[0] != (0, 0), (i, found)
        shifts.append(found[0])
    seen = set(shifts)
    assert len(seen) > 8  # each crop draws its own shift
    # edges are repeated into the gap, not wrapped round
    i, (dy, _) = next((i, s) for i, s in enumerate(shifts) if s[0] > 0)
    assert all(torch.equal(moved[i, :, row], moved[i, :, dy]) for row in range(dy))


@training
def test_a_training_with_the_consistency_term_scores_each_batch_twice_and_records_it(tmp_path, fixtures):
    """The term trains end to end (both views through the net, finite losses) and is part of
    what a resumed run must share: a run recorded before the setting existed had it off."""
    csv_path = make_dataset(tmp_path, fixtures)
    cfg = FitConfig(csv=csv_path, arch="mobilenet_v3_small", out=tmp_path / "out", val_fraction=0.34, seed=0,
                    phase=phase("48:1:2", terms=Terms(consistency=5.0)))
    result = fit(cfg, log=quiet)
    assert all(np.isfinite(h["loss"]) for h in result["history"]) and len(result["history"]) == 2
    assert result["config"]["phase"]["terms"]["consistency"] == 5.0
    assert FitConfig(csv=None, arch=None, out=None).fingerprint()["phase"]["terms"]["consistency"] == 0.0


def _card(recipe: Recipe) -> str:
    import json

    from train.model_card import render

    weights = Path(__file__).resolve().parents[1] / "facegate" / "weights"
    metrics = json.loads((weights / "metrics.json").read_text())
    return render(ScorerSpec.load(weights / "spec.json"), {**metrics, "recipe": recipe.to_dict()})


def test_the_model_card_is_the_shipped_recipe_rendered():
    """The committed card is what train.model_card renders from metrics.json, whose recipe is
    the shipped one: the card restates nothing by hand."""
    import json

    weights = Path(__file__).resolve().parents[1] / "facegate" / "weights"
    metrics = json.loads((weights / "metrics.json").read_text())
    assert Recipe.from_dict(metrics["recipe"]) == SHIPPED
    assert _card(SHIPPED) == (weights / "MODEL_CARD.md").read_text()
    card = _card(SHIPPED.with_setting("resolution.optimiser.lr_head", "2e-5"))
    assert "head lr 2e-05, backbone lr 5e-05" in card and "head lr 5e-05" not in card


def test_the_model_card_says_where_the_consistency_term_was_used_and_how_far_crops_moved():
    """Rendered from the shipped recipe with the term switched on in both phases: each phase
    gets its line, with the move the training really used."""
    from train.augment import CONSISTENCY_PIXELS

    assert "scored twice" not in _card(SHIPPED)
    card = _card(SHIPPED.with_settings(["members.terms.consistency=50", "resolution.terms.consistency=20"]))
    lines = [line for line in card.splitlines() if "scored twice" in line]
    assert len(lines) == 2 and "`members`" in lines[0] and "`resolution`" in lines[1]
    assert all(f"1-{CONSISTENCY_PIXELS} px" in line for line in lines)
    assert "weight 50" in lines[0] and "weight 20" in lines[1]


def test_the_model_card_names_the_teacher_term_only_when_it_was_used():
    assert "1 - cosine enters the loss" not in _card(SHIPPED)
    card = _card(SHIPPED.with_setting("members.terms.teacher", "2"))
    assert "recognizer's embedding of each crop: 1 - cosine enters the loss at weight 2" in card
    assert "moving average of the weights" not in card
    assert "(decay 0.998 per step" in _card(SHIPPED.with_setting("members.ema", "0.998"))


@training
def test_a_soup_averages_runs_from_one_start_and_measures_its_batch_norm_again(tmp_path, fixtures):
    """A phase with soup 2: phase 1 trained twice from one start, the start a plain run of
    seed 0 draws (so that run is one of the ingredients, bit for bit); the soup is the average
    weight by weight, with batch-norm statistics measured again on training crops (the mean of
    what each layer sees there), not averaged; the validation figures of each run and of the
    soup are reported; runs of different architectures are refused; the model card says so."""
    import json
    from dataclasses import replace

    from facegate.models import build_member
    from train.averaging import average_states
    from train.release import Release, soup_phase
    from train.soup import measure_batch_norm

    csv_path = make_dataset(tmp_path, fixtures)
    torch.set_num_threads(1)
    plain_phase = phase("48:1:2", batch=6, lr=2e-3)
    settings = dict(csv=csv_path, arch="mobilenet_v3_small", val_fraction=0.34, margin=0.0)
    # one job: the release fits in this process on every core; the plain run alike
    from facegate.runtime import available_cores

    fit(FitConfig(out=tmp_path / "plain", phase=plain_phase, threads=available_cores(), **settings), log=quiet)
    release = Release(SHIPPED, tmp_path, tmp_path / "work", tmp_path / "out", jobs=1)
    souped = replace(plain_phase, soup=2)
    records = soup_phase(release, [FitConfig(out=tmp_path / "members", phase=souped, **settings)])

    def weights(folder):
        return torch.load(tmp_path / folder / "mobilenet_v3_small.pt", weights_only=True)["state_dict"]

    soup, a, b, plain = weights("members"), weights("members.soup/seed0"), weights("members.soup/seed1"), weights("plain")
    assert all(torch.equal(a[k], plain[k]) for k in plain)
    assert not torch.equal(a["head.0.weight"], b["head.0.weight"])  # the seeds did train apart
    for name in ("head.0.weight", "head.3.bias", "features.0.0.weight"):
        assert torch.allclose(soup[name], (a[name] + b[name]) / 2)
    bn_mean = "features.0.1.running_mean"
    assert not torch.allclose(soup[bn_mean], (a[bn_mean] + b[bn_mean]) / 2)
    report = json.loads((tmp_path / "members" / "soup.json").read_text())["mobilenet_v3_small"]
    assert set(report["ingredients"]) == {str(tmp_path / "members.soup" / f"seed{k}") for k in (0, 1)}
    assert records["mobilenet_v3_small"]["best"]["srcc"] == report["soup"]["srcc"]
    assert records["mobilenet_v3_small"]["epochs"] == 4
    assert load_member(tmp_path / "members" / "mobilenet_v3_small.pt", "mobilenet_v3_small") is not None
    # the command line: never into one of its own runs
    from train.soup import main

    before = (tmp_path / "plain" / "mobilenet_v3_small.pt").read_bytes()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "plain"), str(tmp_path / "plain"), str(tmp_path / "members"), "--csv", str(csv_path),
              "--members", "mobilenet_v3_small"])
    assert (tmp_path / "plain" / "mobilenet_v3_small.pt").read_bytes() == before

    # measured again: a layer's running mean is the mean of its inputs over the crops
    net = build_member("mobilenet_v3_small")
    seen = []
    net.features[0][1].register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].detach()))
    crops = np.random.default_rng(0).integers(0, 256, (8, 48, 48, 3), dtype=np.uint8)
    measure_batch_norm(net, crops, ScorerSpec(input_size=48), batch_size=4)
    expected = torch.stack([x.mean((0, 2, 3)) for x in seen]).mean(0)
    assert len(seen) == 2 and torch.allclose(net.features[0][1].running_mean, expected, atol=1e-5)
    assert not net.training
    with pytest.raises(ValueError, match="differ in architecture"):
        average_states([net.state_dict(), build_member("shufflenet_v2_x1_0").state_dict()])

    assert "model soup" not in _card(SHIPPED)
    assert "trained 3 times from one start" in _card(SHIPPED.with_setting("members.soup", "3"))


def test_identity_batches_hold_each_person_in_runs_and_every_capture_once():
    from train.trainer import identity_batches

    people = [f"p{k % 7}" for k in range(60)] + [None, None]  # seven people, two captures of nobody known
    batches = identity_batches(people, 16, 4, torch.Generator().manual_seed(0))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(62))
    for batch in batches:
        counts = {}
        for pos in batch:
            counts[people[pos]] = counts.get(people[pos], 0) + 1
        assert max(c for who, c in counts.items() if who is not None) >= 2  # every batch holds pairs
    assert len(batches[0]) >= 16


@training
def test_the_pair_term_lifts_the_captures_a_recognizer_matches_and_lowers_the_others(tmp_path, fixtures, shared):
    """LightQNet's IDQ loss on the recognizer's own embeddings: one person's sharp and
    heavily blurred crops at the same score; the gradient raises the sharp crop, whose pairs
    match, and lowers the blurred one, whose pairs do not. The term reaches a fit only with the
    embeddings (a train.distill folder's targets.npz) beside it, and the fit runs with it."""
    from facegate.recognition import MobileFaceNetRecognizer
    from train.distill import teacher_targets
    from train.terms import Forward, PairTerm, StepData, same_person_pairs

    csv_path = make_dataset(tmp_path, fixtures)
    spec = ScorerSpec(input_size=48)
    samples = read_csv(csv_path)
    crops, kept = load_crops(samples, spec)
    embeddings = teacher_targets(crops, spec, MobileFaceNetRecognizer(str(shared / "models" / "mobilefacenet_casia.ckpt")))
    # colin_powell_1 and _2: one person, four blur levels each (0, 1.5, 3, 5); tony_blair apart
    identities = ["powell"] * 8 + ["blair"] * 4
    a, b = same_person_pairs(identities)
    assert len(a) == 28 + 6 and all(identities[i] == identities[j] for i, j in zip(a.tolist(), b.tolist()))
    term = PairTerm(embeddings, identities, threshold=0.39, tau=0.04, weight=1.0)
    pred = torch.full((12,), 0.5, requires_grad=True)
    step = StepData(x=None, target=None, rows=np.arange(12), positions=np.arange(12), crops=crops, spec=spec,
                    groups=[], reference=np.zeros(12, bool))
    term(step, Forward(pred)).backward()
    sharp, blurred = [0, 4], [3, 7]  # the two Powell photos as they are, and blurred at sigma 5
    assert (pred.grad[sharp] < 0).all() and (pred.grad[blurred] > pred.grad[sharp].max()).all(), pred.grad

    folder = tmp_path / "embeddings"
    folder.mkdir()
    np.savez(folder / "targets.npz", targets=embeddings, kept=kept)
    (tmp_path / "threshold.json").write_text('{"cosine": 0.39}')
    paired = phase("48:1:1", terms=Terms(pair=1.0, per_identity=2))
    result = fit(FitConfig(csv=csv_path, arch="mobilenet_v3_small", out=tmp_path / "pair", phase=paired,
                           val_fraction=0.34, teacher=folder), log=quiet)
    assert len(result["history"]) == 1 and np.isfinite(result["history"][0]["loss"])
    with pytest.raises(ValueError, match="pair term needs"):
        fit(FitConfig(csv=csv_path, arch="mobilenet_v3_small", out=tmp_path / "no_embeddings", phase=paired,
                      val_fraction=0.34), log=quiet)
    with pytest.raises(ValueError, match="per_identity"):
        Terms(pair=1.0, per_identity=1)


def test_the_model_card_names_the_pair_term_only_when_it_was_used():
    assert "IDQ" not in _card(SHIPPED)
    card = _card(SHIPPED.with_setting("resolution.terms.pair", "0.5"))
    assert "Batches hold 4 captures of each person" in card and "IDQ loss" in card and "at weight 0.5" in card
