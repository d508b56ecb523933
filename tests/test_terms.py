"""The terms of the code and of the weights, stated where a user decides whether they may
use them (package metadata, the spec, the model card, `facegate info`), and the way out for
users with other needs: weights trained on their own people with their own terms."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from click.testing import CliRunner

from facegate import Gate, ScorerSpec, default_weights_dir, weights_info
from facegate.cli import main


def test_the_shipped_weights_state_narrower_terms_than_the_code():
    spec = ScorerSpec.load(default_weights_dir() / "spec.json")
    assert "non-commercial research use only" in spec.terms
    card = (default_weights_dir() / "MODEL_CARD.md").read_text()
    assert spec.terms in card  # rendered from the spec, not restated
    about = weights_info()
    assert about["code_license"] == "MIT"
    assert about["weights"]["terms"] == spec.terms and about["weights"]["shipped"]
    assert about["weights"]["score_scale"] == spec.score_scale == "fg-utility-v2"
    # the capture stage's helpers, trained here on the same photos from the ImageNet start
    for name in ("orientation", "occlusion"):
        assert "non-commercial research use only" in about["helpers"][name] and "ImageNet" in about["helpers"][name]
    # the installed package's metadata, what pip show and PyPI display
    license_field = metadata.metadata("facegate")["License"]
    assert "MIT" in license_field and "non-commercial" in license_field


def test_facegate_info_prints_the_loaded_weights_and_their_terms(tmp_path):
    runner = CliRunner()
    text = runner.invoke(main, ["info"])
    assert text.exit_code == 0, text.output
    assert "fg-utility-v2" in text.output and "non-commercial research use only" in text.output
    as_json = json.loads(runner.invoke(main, ["info", "--format", "json"]).output)
    assert as_json["weights"]["name"] == ScorerSpec.load(default_weights_dir() / "spec.json").name
    # weights whose spec states no terms are said to have none stated, not the shipped ones'
    ScorerSpec(name="mine").save(tmp_path / "spec.json")
    other = runner.invoke(main, ["info", "--weights", str(tmp_path)])
    terms_line = next(line for line in other.output.splitlines() if line.strip().startswith("terms:"))
    assert other.exit_code == 0 and "not stated" in terms_line and "non-commercial" not in terms_line
    # the capture stage's helpers ship with the package, whatever the weights: their terms stay printed
    assert "helper orientation: non-commercial" in other.output
    not_weights = runner.invoke(main, ["info", "--weights", str(tmp_path / "..")])
    assert not_weights.exit_code == 1 and "not a facegate weights folder" in not_weights.output


def test_score_reads_one_image_from_standard_input(fixtures, gate):
    runner = CliRunner()
    photo = fixtures / "tony_blair_1.jpg"
    piped = runner.invoke(main, ["score", "--format", "jsonl", "-"], input=photo.read_bytes())
    assert piped.exit_code == 0, piped.output
    record = json.loads(piped.output)
    assert record["source"] == "<stdin>" and record["score"] == pytest.approx(gate.assess(photo).score, abs=0.005)
    garbage = runner.invoke(main, ["score", "-"], input=b"not an image")
    assert garbage.exit_code == 1 and "not an image format" in garbage.output and "BytesIO" not in garbage.output
    twice = runner.invoke(main, ["score", "-", "-"], input=photo.read_bytes())
    assert twice.exit_code == 2 and "once" in twice.output


@pytest.mark.training
def test_release_on_your_own_people_writes_your_terms(tmp_path, shared, fixtures):
    """`python -m train.release --people DIR --recognizer CKPT --terms TEXT`, tiny: labels,
    distillation, both members, scale and threshold, the card; the weights carry the terms
    given and the gate scores with them."""
    from train.lfw import training_people
    from train.release import main as release

    people = tmp_path / "people"
    chosen = [(name, photos) for name, photos in sorted(training_people(shared).items()) if len(photos) >= 3][:10]
    for name, photos in chosen:
        (people / name).mkdir(parents=True)
        for photo in photos[:3]:
            (people / name / photo.name).symlink_to(photo)
    (people / chosen[0][0] / "notes.txt").write_text("a sidecar, not a photo")
    recognizer = str(shared / "models" / "mobilefacenet_casia.ckpt")
    with pytest.raises(SystemExit) as refused:  # your photos, your terms: never the shipped data's by default
        release(["--people", str(people), "--recognizer", recognizer, "--work", str(tmp_path / "w")])
    assert refused.value.code == 2 and not (tmp_path / "w").exists()
    out = tmp_path / "mine"
    release(["--people", str(people), "--recognizer", recognizer, "--terms", "internal evaluation at Example Ltd only",
             "--work", str(tmp_path / "work"), "--out", str(out), "--set", "members.stages=64:1:1",
             "--set", "resolution.stages=64:1:1", "--set", "distillation.epochs=1", "--set", "labels.variants=1",
             "--jobs", "1"])
    spec = ScorerSpec.load(out / "spec.json")
    # the shipped recipe starts MobileNetV3-Small from ImageNet weights: their terms join the ones given
    assert spec.terms.startswith("internal evaluation at Example Ltd only; ") and "ImageNet's terms" in spec.terms
    labels = (tmp_path / "work" / "labels" / "labels.csv").read_text()
    assert f"own/{chosen[0][0]}" in labels and "notes.txt" not in labels and "celeba/" not in labels
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["people"] == str(people) and "sensitivity" not in metrics
    card = (out / "MODEL_CARD.md").read_text()
    assert spec.terms in card and "CelebA is for non-commercial" not in card
    assert f"Command: `python -m train.release --people {people}" in card  # what made them, not the shipped command
    assert weights_info(out)["weights"]["terms"] == spec.terms
    result = Gate(weights=out, threads=2).assess(fixtures / "tony_blair_1.jpg")
    assert result.face is not None and result.score is not None
    assert metrics["recipe"]["phases"][0]["stages"] == "64:1:1" and metrics["recipe"]["labels"]["variants"] == 1
