import hashlib
import json
import shutil

import pytest
from click.testing import CliRunner

from facegate.cli import main


@pytest.fixture()
def enrol(tmp_path, fixtures):
    """A small enrollment folder: good faces, a group photo, no face, a corrupt file, and
    the same file name in two sub-folders."""
    src = tmp_path / "enrol"
    (src / "desk1").mkdir(parents=True)
    (src / "desk2").mkdir()
    shutil.copy(fixtures / "colin_powell_1.jpg", src / "desk1" / "capture.jpg")
    shutil.copy(fixtures / "tony_blair_1.jpg", src / "desk2" / "capture.jpg")
    shutil.copy(fixtures / "multiface.jpg", src / "group.jpg")
    shutil.copy(fixtures / "no_face.jpg", src / "wall.jpg")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (src / "notes.txt").write_text("not an image")
    return src


def checksums(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_score_formats(fixtures):
    runner = CliRunner()
    table = runner.invoke(main, ["score", str(fixtures / "tony_blair_1.jpg"), str(fixtures / "no_face.jpg")])
    assert table.exit_code == 0, table.output
    assert "accepted" in table.output and "no_face" in table.output
    jsonl = runner.invoke(main, ["score", "--format", "jsonl", str(fixtures)])
    records = [json.loads(line) for line in jsonl.output.splitlines()]
    assert len(records) == 5 and {r["status"] for r in records} >= {"accepted", "rejected", "no_face"}
    csv_out = runner.invoke(main, ["score", "--format", "csv", str(fixtures / "multiface.jpg")])
    assert csv_out.output.splitlines()[0].startswith("source,status,reasons,score")
    assert "multiple_faces" in csv_out.output


def test_score_exit_code_for_unreadable(tmp_path, fixtures):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    result = CliRunner().invoke(main, ["score", str(bad), str(fixtures / "tony_blair_1.jpg")])
    assert result.exit_code == 1
    assert "unreadable" in result.output and "Traceback" not in result.output


def test_score_aligned_crops(tmp_path, fixtures):
    from facegate import Gate
    from facegate.images import load_rgb
    from PIL import Image

    gate = Gate()
    rgb = load_rgb(fixtures / "colin_powell_1.jpg")
    crop = gate.spec.crop(rgb, gate.assess(rgb, color_order="rgb").face.landmarks)
    Image.fromarray(crop).save(tmp_path / "crop.png")
    result = CliRunner().invoke(main, ["score", "--aligned", "--format", "jsonl", str(tmp_path / "crop.png")])
    assert result.exit_code == 0
    record = json.loads(result.output)
    assert record["score"] == pytest.approx(gate.assess(rgb, color_order="rgb").score, abs=0.01)
    assert record["status"] == "accepted" and record["reasons"] == [] and record["face"] is None
    # the same columns as photos, and the threshold applies
    strict = CliRunner().invoke(main, ["score", "--aligned", "--threshold", "99", str(tmp_path / "crop.png")])
    assert strict.output.splitlines()[0].split() == ["status", "score", "faces", "source", "reasons:", "prompt"]
    assert "rejected" in strict.output and "low_quality" in strict.output
    Image.fromarray(crop[:, :100]).save(tmp_path / "narrow.png")
    narrow = json.loads(CliRunner().invoke(main, ["score", "--aligned", "--format", "jsonl",
                                                   str(tmp_path / "narrow.png")]).output)
    assert any("not square" in note for note in narrow["notes"]) and narrow["image_size"] == [100, 128]


def test_score_lines_are_the_api_results(gate, fixtures):
    """The command is a thin layer: each JSON line is the API's own result."""
    files = sorted(fixtures.glob("*.jpg"))
    result = CliRunner().invoke(main, ["score", "--format", "jsonl", *map(str, files)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.output.splitlines()] == [gate.assess(f).to_dict() for f in files]


def test_weights_problems_exit_1_with_the_cause(tmp_path):
    """A corrupt weights folder is not a usage error: exit 1 and say which file."""
    import shutil

    from facegate.scorer import default_weights_dir

    broken = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), broken)
    (broken / "shufflenet_v2_x1_0.onnx").write_bytes(b"not a graph")
    result = CliRunner().invoke(main, ["score", "--weights", str(broken), str(tmp_path)])
    assert result.exit_code == 1 and "shufflenet_v2_x1_0.onnx" in result.output
    assert "Traceback" not in result.output


def test_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["score"]).exit_code == 2
    assert runner.invoke(main, ["score", "--threshold", "150", str(tmp_path)]).exit_code == 2


def test_filter_sorts_copies_and_resumes(tmp_path, enrol):
    before = checksums(enrol)
    acc, rej, manifest = tmp_path / "ok", tmp_path / "bad", tmp_path / "manifest.jsonl"
    # threshold 0: every single clear face is accepted, whatever the weights think of it
    args = ["filter", str(enrol), "--accepted", str(acc), "--rejected", str(rej), "--manifest", str(manifest),
            "--threshold", "0"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 1, first.output  # broken.jpg is unreadable
    assert checksums(enrol) == before  # originals untouched
    records = {r["file"]: r for r in map(json.loads, manifest.read_text().splitlines())}
    assert set(records) == {"desk1/capture.jpg", "desk2/capture.jpg", "group.jpg", "wall.jpg", "broken.jpg"}
    assert "1 non-image file skipped" in first.output  # notes.txt: a sidecar, not a capture
    assert records["group.jpg"]["side"] == "rejected" and "multiple_faces" in records["group.jpg"]["reasons"]
    assert records["wall.jpg"]["status"] == "no_face" and records["broken.jpg"]["status"] == "unreadable"
    assert records["desk2/capture.jpg"]["status"] == "accepted"
    assert records["desk2/capture.jpg"]["face"]["box"]
    # same name in two folders: both kept, under their own sub-folders
    for rec in records.values():
        copy = (acc if rec["side"] == "accepted" else rej) / rec["destination"]
        assert copy.is_file() and copy.read_bytes() == (enrol / rec["file"]).read_bytes()

    # interrupted run: drop the last two records (and leave a half-written line); re-run
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:20])
    second = CliRunner().invoke(main, args)
    assert "3 already done" in second.output
    again = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(r["file"] for r in again) == sorted(records)  # none missing, none twice
    assert checksums(enrol) == before


def test_filter_never_overwrites_a_different_file(tmp_path, enrol):
    acc, rej = tmp_path / "ok", tmp_path / "bad"
    (acc / "desk2").mkdir(parents=True)
    (acc / "desk2" / "capture.jpg").write_bytes(b"somebody else's file")
    result = CliRunner().invoke(main, ["filter", str(enrol), "--accepted", str(acc), "--rejected", str(rej),
                                       "--threshold", "0"])
    assert (acc / "desk2" / "capture.jpg").read_bytes() == b"somebody else's file"
    assert (acc / "desk2" / "capture (1).jpg").read_bytes() == (enrol / "desk2" / "capture.jpg").read_bytes()
    assert (tmp_path / "facegate-manifest.jsonl").exists(), result.output


def test_calibrate_hits_the_reject_rate(tmp_path, fixtures):
    out = tmp_path / "policy.json"
    # 4 faces: a threshold resting on 2 of them is refused (too few to trust), and said
    refused = CliRunner().invoke(main, ["calibrate", str(fixtures), "--reject-rate", "0.5", "--out", str(out)])
    assert refused.exit_code == 2 and "too few" in refused.output and not out.exists()
    result = CliRunner().invoke(main, ["calibrate", str(fixtures), "--reject-rate", "0.5", "--out", str(out),
                                       "--allow-small-sample"])
    assert result.exit_code == 0, result.output
    assert "95% interval" in result.output
    policy = json.loads(out.read_text())
    # 4 photos with a face; rejecting at least half of them means 2 below the threshold
    from facegate import Gate

    scores = [r.score for r in Gate().assess_many(sorted(fixtures.glob("*.jpg"))) if r.score is not None]
    assert len(scores) == 4
    assert sum(s < policy["min_score"] for s in scores) == 2
    rerun = CliRunner().invoke(main, ["calibrate", str(fixtures), "--reject-rate", "0.5", "--out", str(out),
                                      "--allow-small-sample"])
    assert rerun.exit_code == 2  # refuses to overwrite
    used = CliRunner().invoke(main, ["score", "--policy", str(out), "--format", "jsonl", str(fixtures)])
    statuses = [r["status"] for r in map(json.loads, used.output.splitlines())]
    assert statuses.count("accepted") <= 2


def test_every_option_has_help_text():
    import click

    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"facegate {name} {param.opts[0]} has no help text"


def test_allow_multiple_faces_accepts_a_group_photo_otherwise_rejected(fixtures):
    photo = str(fixtures / "multiface.jpg")
    strict = json.loads(CliRunner().invoke(main, ["score", "--format", "jsonl", "--threshold", "0", photo]).output)
    lenient = json.loads(CliRunner().invoke(main, ["score", "--format", "jsonl", "--threshold", "0",
                                                    "--allow-multiple-faces", photo]).output)
    assert "multiple_faces" in strict["reasons"] and "multiple_faces" not in lenient["reasons"]


def test_a_policy_file_with_a_bad_value_names_the_field_and_the_file(tmp_path, fixtures):
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"facegate_policy": 1, "min_score": "high"}))
    result = CliRunner().invoke(main, ["score", "--policy", str(bad), str(fixtures / "tony_blair_1.jpg")])
    assert result.exit_code == 2 and "min_score" in result.output and "policy.json" in result.output
    assert "Traceback" not in result.output and "TypeError" not in result.output


def test_outputs_inside_the_source_are_not_inputs_on_a_second_run(tmp_path, enrol):
    """`filter day1 --accepted day1/acc --rejected day1/rej`: the manifest and earlier copies
    lie inside the source; a second run must not assess them."""
    args = ["filter", str(enrol), "--accepted", str(enrol / "acc"), "--rejected", str(enrol / "rej"),
            "--manifest", str(enrol / "manifest.jsonl"), "--threshold", "0"]
    first = CliRunner().invoke(main, args)
    second = CliRunner().invoke(main, args)
    assert first.exit_code == second.exit_code == 1  # broken.jpg, both times
    assert "5 already done" in second.output
    records = [json.loads(line) for line in (enrol / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 5 and not any(r["file"].startswith(("acc/", "rej/", "manifest")) for r in records)


def test_accepted_and_rejected_must_differ(tmp_path, enrol):
    result = CliRunner().invoke(main, ["filter", str(enrol), "--accepted", str(tmp_path / "x"),
                                       "--rejected", str(tmp_path / "x")])
    assert result.exit_code == 2 and "same folder" in result.output


def test_resume_redoes_changed_files_and_refuses_changed_settings(tmp_path, fixtures):
    """Resume is keyed on what a record was made from: the source file (path, size,
    modification time) and the settings, not on the relative name alone."""
    import os

    day1, day2 = tmp_path / "day1", tmp_path / "day2"
    for day in (day1, day2):
        day.mkdir()
    shutil.copy(fixtures / "tony_blair_1.jpg", day1 / "IMG_0001.jpg")
    shutil.copy(fixtures / "no_face.jpg", day2 / "IMG_0001.jpg")  # same name, another day, other content
    out = ["--accepted", str(tmp_path / "acc"), "--rejected", str(tmp_path / "rej"),
           "--manifest", str(tmp_path / "m.jsonl")]
    assert CliRunner().invoke(main, ["filter", str(day1), *out]).exit_code == 0
    second = CliRunner().invoke(main, ["filter", str(day2), *out])
    assert second.exit_code == 0 and "already done" not in second.output
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["accepted", "no_face"]
    assert records[1]["source_path"].endswith("day2/IMG_0001.jpg") and records[1]["size"] > 0

    # the same file replaced by other content: assessed again
    shutil.copy(fixtures / "multiface.jpg", day1 / "IMG_0001.jpg")
    os.utime(day1 / "IMG_0001.jpg", ns=(1, 1))
    third = CliRunner().invoke(main, ["filter", str(day1), *out])
    assert third.exit_code == 0 and "already done" not in third.output
    last = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[-1])
    assert "multiple_faces" in last["reasons"]
    # unchanged: nothing to do
    assert "1 already done" in CliRunner().invoke(main, ["filter", str(day1), *out]).output

    # other settings over the same records: refused, naming the change
    refused = CliRunner().invoke(main, ["filter", str(day1), *out, "--threshold", "60"])
    assert refused.exit_code == 2 and "min_score" in refused.output and "new --manifest" in refused.output


def test_no_library_chatter(fixtures, tmp_path):
    """Only facegate's own lines: no OpenCV warnings, no exporter progress."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "facegate.cli", "score", "--detector", "yunet", "--threads", "1",
                          str(fixtures / "colin_powell_1.jpg")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "WARN" not in run.stderr + run.stdout, run.stderr
    exported = subprocess.run([sys.executable, "-m", "facegate.cli", "export", "--views", "none", "--out",
                               str(tmp_path / "g.onnx")], capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0 and exported.stdout == "" and "[torch.onnx]" not in exported.stderr


def test_dry_run_writes_the_manifest_and_copies_nothing(tmp_path, enrol):
    before = checksums(enrol)
    args = ["filter", str(enrol), "--accepted", str(tmp_path / "ok"), "--rejected", str(tmp_path / "bad"),
            "--manifest", str(tmp_path / "m.jsonl"), "--threshold", "0"]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 1  # broken.jpg is unreadable, as in a real run
    assert not (tmp_path / "ok").exists() and not (tmp_path / "bad").exists() and checksums(enrol) == before
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(records) == 5 and all(r["dry_run"] and r["destination"] is None for r in records)
    real = CliRunner().invoke(main, args)  # the dry run did not count as done
    assert "already done" not in real.output and any((tmp_path / "ok").rglob("*.jpg"))
