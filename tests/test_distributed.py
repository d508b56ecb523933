"""The Ray Data engine decides exactly as one machine does, and resumes like it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from facegate import Gate
from facegate.cli import main
from facegate.folder import find_images
from tests.bad_inputs import make_bad_inputs

ray = pytest.importorskip("ray", reason='the Ray engine needs Ray: pip install -e ".[dev]" (or "facegate[ray]")')


@pytest.fixture(scope="module")
def local_ray():
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    except Exception as exc:  # e.g. a container where Ray's processes cannot start
        pytest.skip(f"a local Ray instance would not start here: {exc}")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(shared, tmp_path_factory):
    """About 200 LFW photos (evaluation people, one folder each) and the bad-input fixture."""
    from train.lfw import evaluation_people

    root = tmp_path_factory.mktemp("ray") / "src"
    lfw = shared / "data" / "lfw-deepfunneled"
    count = 0
    for person in sorted(evaluation_people(shared)):
        for photo in sorted((lfw / person).glob("*.jpg"))[:3]:
            (root / person).mkdir(parents=True, exist_ok=True)
            (root / person / photo.name).write_bytes(photo.read_bytes())
            count += 1
        if count >= 200:
            break
    make_bad_inputs(root / "bad")
    return root


def test_ray_gives_the_local_decisions(local_ray, folder):
    from facegate.distributed import gate_dataset

    paths = [str(p) for p in find_images(folder)]
    local = {r.source: r for r in Gate(views="none", threads=1).assess_many(paths)}
    rows = gate_dataset(paths, workers=2, views="none").take_all()
    records = [json.loads(r["record"]) for r in rows]
    assert sorted(r["source"] for r in records) == sorted(paths)  # one row per file, none lost or doubled
    for row, record in zip(rows, records):
        expected = local[record["source"]]
        assert record["status"] == expected.status.value == row["status"], record["source"]
        assert record["reasons"] == list(expected.reasons) == [x for x in row["reasons"].split(",") if x]
        assert record["error"] == expected.error
        if expected.score is None:
            assert row["score"] is None
        else:
            assert row["score"] == pytest.approx(expected.score, abs=0.01)
    assert {r["status"] for r in rows} >= {"accepted", "unreadable"}


def test_object_store_path_bytes_to_parquet(local_ray, folder, tmp_path):
    """The cluster path of docs/scale-out.md, on a local folder standing in for a bucket:
    Ray reads the files as bytes, the workers decode them with facegate's own loader, Ray
    writes Parquet; every file comes back once, decided as on one machine. The default
    worker count leaves a CPU for Ray's read tasks (two actors on these two CPUs starve
    them and the run never ends)."""
    import pyarrow.parquet as pq

    from facegate.distributed import RESULT_COLUMNS, gate_dataset

    photos = sorted(p for p in find_images(folder) if p.parent.name != "bad")[:30]
    broken = tmp_path / "in" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(photos[0].read_bytes()[:200])  # a truncated JPEG, readable as bytes
    files = [str(p) for p in photos] + [str(broken)]
    dataset = ray.data.read_binary_files(files, include_paths=True).rename_columns({"path": "source"})
    out = tmp_path / "results"
    gate_dataset(dataset, views="none").write_parquet(str(out))
    table = pq.read_table(str(out))
    assert set(RESULT_COLUMNS) <= set(table.column_names)
    rows = {Path(r["source"]).parent.name + "/" + Path(r["source"]).name: r for r in table.to_pylist()}
    assert len(rows) == table.num_rows == len(files)  # none lost, none doubled
    local = Gate(views="none", threads=1)
    for path in files:
        expected = local.assess(path)
        row = rows[Path(path).parent.name + "/" + Path(path).name]
        record = json.loads(row["record"])
        assert row["status"] == record["status"] == expected.status.value, path
        assert record["reasons"] == list(expected.reasons)
        if expected.score is not None:
            assert row["score"] == pytest.approx(expected.score, abs=0.01)
    assert rows["in/broken.jpg"]["status"] == "unreadable"


def test_filter_on_ray_resumes_without_losing_or_doubling_records(local_ray, folder, tmp_path):
    args = ["filter", str(folder), "--accepted", str(tmp_path / "acc"), "--rejected", str(tmp_path / "rej"),
            "--engine", "ray", "--workers", "2", "--views", "none"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code in (0, 1), first.output
    manifest = tmp_path / "facegate-manifest.jsonl"
    lines = manifest.read_text().splitlines()
    n = len(lines)
    # as if the run had been killed before its last 10 records were written
    kept = lines[:-10]
    manifest.write_text("\n".join(kept) + "\n")
    # every kept record is done, a dangling link's too (recorded with its cause, as locally)
    done = len(kept)
    again = CliRunner().invoke(main, args + ["--parquet", str(tmp_path / "records.parquet")])
    assert again.exit_code in (0, 1), again.output
    assert f"({done} already done)" in again.output
    added = manifest.read_text().splitlines()[len(kept):]
    assert len(added) == n - done  # nothing already done was assessed again
    records = list({r["source_path"]: r for r in map(json.loads, manifest.read_text().splitlines())}.values())
    assert len(records) == n
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "records.parquet").to_pylist()
    assert len(table) == n
    assert sorted((json.loads(r["record"])["source_path"], r["status"]) for r in table) == \
        sorted((r["source_path"], r["status"]) for r in records)
    local = CliRunner().invoke(main, ["filter", str(folder), "--accepted", str(tmp_path / "acc2"), "--rejected",
                                      str(tmp_path / "rej2"), "--manifest", str(tmp_path / "local.jsonl"),
                                      "--views", "none"])
    expected = {json.loads(x)["source_path"]: json.loads(x) for x in (tmp_path / "local.jsonl").read_text().splitlines()}
    for r in records:
        assert (r["status"], r["reasons"], r["side"]) == (expected[r["source_path"]]["status"],
                                                          expected[r["source_path"]]["reasons"],
                                                          expected[r["source_path"]]["side"]), r["file"]
    assert sorted(p.name for p in Path(tmp_path / "acc").rglob("*.jpg")) == \
        sorted(p.name for p in Path(tmp_path / "acc2").rglob("*.jpg"))
    assert local.exit_code in (0, 1)


def test_object_store_run_resumes_from_its_parquet_output(local_ray, folder, tmp_path):
    """A run writing Parquet is interrupted: one output file never written, another cut off
    mid-write. The re-run skips what the folder holds (done_sources), sets the cut file aside
    (renamed, not deleted) and decides the rest: every file once, none lost or doubled."""
    import pyarrow.parquet as pq

    from facegate.distributed import done_sources, gate_dataset

    photos = [str(p) for p in sorted(find_images(folder)) if Path(p).parent.name != "bad"][:24]
    out = tmp_path / "results"
    gate_dataset(photos, views="none").repartition(4).write_parquet(str(out))
    files = sorted(out.glob("*.parquet"))
    assert len(files) >= 3
    files[0].unlink()  # never written
    files[1].write_bytes(files[1].read_bytes()[:100])  # cut off mid-write
    done = done_sources(out)
    assert 0 < len(done) < len(photos)
    assert (out / f"_{files[1].name}.incomplete").is_file()  # set aside, not deleted
    assert done_sources(tmp_path / "nothing-yet") == set()
    dataset = ray.data.read_binary_files(photos, include_paths=True).rename_columns({"path": "source"})
    gate_dataset(dataset, views="none", skip=done).write_parquet(str(out))
    sources = pq.read_table(str(out), columns=["source"]).column("source").to_pylist()
    assert sorted(sources) == sorted(photos)  # each exactly once


def test_asking_for_gpus_a_cluster_lacks_fails_at_once(local_ray, folder):
    """Ray would queue GPU actors for ever on a cluster without GPUs: say so instead."""
    from facegate.distributed import gate_dataset
    from facegate.errors import ConfigError

    with pytest.raises(ConfigError, match="has 0 GPUs"):
        gate_dataset([str(p) for p in find_images(folder)][:2], gpus_per_worker=1, backend="torch", device="cuda")


def test_a_ray_run_prints_facegate_lines_not_rays(folder, tmp_path):
    """Ray's notices (token authentication, progress bars switched off) stay out of a
    facegate run's output; the summary is there."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "facegate.cli", "filter", str(folder), "--accepted",
                          str(tmp_path / "acc"), "--rejected", str(tmp_path / "rej"), "--engine", "ray", "--workers",
                          "1", "--views", "none"], capture_output=True, text=True, timeout=600)
    assert run.returncode in (0, 1), run.stderr[-2000:]
    assert "manifest:" in run.stderr
    for chatter in ("Token authentication", "Progress bars disabled", "WARNING", "Traceback"):
        assert chatter not in run.stderr, (chatter, run.stderr[-2000:])
