"""The gate on Ray Data: the same decisions as one machine, spread over a cluster.

    pip install "facegate[ray]"
    facegate filter SRC --accepted A --rejected R --engine ray [--address auto] [--workers N]

or from Python:

    >>> from facegate.distributed import gate_dataset
    >>> ds = gate_dataset(paths, workers=8)                     # a Ray Dataset of result rows
    >>> ds.write_parquet("s3://bucket/facegate-results/")        # Ray's own distributed writer
    >>> # interrupted? the same again, skipping what the folder already holds:
    >>> gate_dataset(paths, skip=done_sources("s3://bucket/facegate-results/")).write_parquet(...)

Each worker is a stateful actor holding one :class:`facegate.Gate` (models loaded once per
worker, torch never imported, its thread budget fixed). Workers read each file themselves
(or decode bytes rows of a dataset that already holds them) with facegate's own loader, so
a bad file gets the same status and message as on one machine. Rows carry the same record
as the local manifest: ``record`` is :meth:`facegate.CaptureResult.to_dict` as JSON (with
``source`` exactly as given), beside flat columns for filtering (``source``, ``status``,
``reasons`` comma-separated, ``score``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError

__all__ = ["gate_dataset", "assess_on_ray", "done_sources", "write_records_parquet", "RESULT_COLUMNS"]

#: Columns of every row of :func:`gate_dataset`.
RESULT_COLUMNS = ("source", "status", "reasons", "score", "record")


def _ray():
    from .extras import require

    require("ray", "the Ray engine (--engine ray)")
    import logging
    import os

    # Ray's own notices (token authentication, progress bars off) are not the user's business
    # in a facegate run; its errors still surface as exceptions.
    import ray

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    return ray


class _GateWorker:
    """One Gate per Ray actor; each batch of rows in, one result row per input out. The
    Gate's options are a class attribute of a subclass made per run (in :func:`gate_dataset`),
    so that no arguments travel through Ray's object store."""

    gate_options: dict[str, Any] = {}

    def __init__(self):
        from .gate import Gate

        self.gate = Gate(**self.gate_options)

    def __call__(self, batch: dict):
        from .images import EncodedImage

        sources = [str(s) for s in batch["source"]]
        images: list = (sources if "bytes" not in batch  # the worker reads the file itself
                        else [EncodedImage(s, bytes(b)) for s, b in zip(sources, batch["bytes"])])
        records = []
        for source, result in zip(sources, self.gate.assess_many(images)):
            records.append({**result.to_dict(), "source": source})
        return _table(records, RESULT_COLUMNS)


def done_sources(output: str | Path) -> set[str]:
    """Sources already decided in the Parquet output folder of an earlier run (a local path
    or a URI pyarrow can open, e.g. ``s3://bucket/results``), to skip on a re-run.

    A run killed while a worker was writing can leave a file that does not read as Parquet:
    it is renamed ``_<name>.incomplete`` (out of readers' way: Arrow and Ray skip names
    starting with ``_``; not deleted) and its rows are decided again, so no record is lost
    and none is doubled."""
    from .extras import require

    require("ray", "resuming a Parquet output")
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    fs, root = pafs.FileSystem.from_uri(str(output) if "://" in str(output) else str(Path(output).resolve()))
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return set()
    done: set[str] = set()
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        try:
            done.update(pq.read_table(info.path, columns=["source"], filesystem=fs).column("source").to_pylist())
        except Exception:  # pyarrow raises several kinds for a truncated file
            head, _, name = info.path.rpartition("/")
            fs.move(info.path, f"{head}/_{name}.incomplete")
    return done


def gate_dataset(source, *, workers: int | None = None, threads_per_worker: int = 1, gpus_per_worker: float = 0,
                 batch_size: int = 16, skip: set[str] | None = None, **gate_options):
    """A Ray Dataset of gate results.

    Args:
        source: file paths, or a Ray Dataset with a ``source`` column (paths the workers
            can read) or ``source`` and ``bytes`` columns (e.g. from
            ``ray.data.read_binary_files(..., include_paths=True)``, renamed).
        workers: actors (default: as many as the cluster's CPUs allow; for a Dataset, one
            CPU fewer, as its read tasks need one: actors holding every CPU starve them, and
            the run waits for ever).
        threads_per_worker: CPUs each actor reserves and its Gate uses.
        gpus_per_worker: GPUs each actor reserves (with ``backend="torch", device="cuda"``).
        batch_size: files per call of an actor (and per forward pass).
        skip: sources not to decide again, e.g. ``done_sources(output)`` of the folder an
            interrupted run was writing (then write to the same folder).
        **gate_options: passed to :class:`facegate.Gate` (``profile``, ``policy``,
            ``weights``, ``views``, ``detector``, ``backend``, ``device``).
    """
    ray = _ray()
    reads = isinstance(source, ray.data.Dataset)  # may still hold read tasks, which need a CPU
    if reads:
        dataset = source
        if skip:
            dataset = dataset.filter(lambda row: _utf8(str(row["source"])) not in skip)
    else:
        dataset = ray.data.from_items([{"source": str(p)} for p in source if not skip or _utf8(str(p)) not in skip])
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus_per_worker > gpus:  # Ray would wait for ever for a GPU that is not there
        raise ConfigError(f"gpus_per_worker={gpus_per_worker:g}, but the Ray cluster has {gpus:g} GPUs; "
                          "leave it at 0 for CPU workers, or add GPU nodes")
    options = {**gate_options, "threads": threads_per_worker, "batch_size": batch_size}
    cpus = ray.available_resources().get("CPU", 1) - (1 if reads else 0)
    actors = workers or max(1, int(cpus // threads_per_worker))
    worker = type("GateWorker", (_GateWorker,), {"gate_options": dict(options)})
    return dataset.map_batches(worker, batch_size=batch_size,
                               compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads_per_worker,
                               num_gpus=gpus_per_worker, batch_format="numpy")


def assess_on_ray(gate_options: dict[str, Any], *, address: str | None = None, workers: int | None = None,
                  threads_per_worker: int = 1, batch_size: int = 16):
    """An ``assess`` function for :func:`facegate.folder.run_filter`: the planned paths go
    through :func:`gate_dataset` and come back as ``(path, record)`` pairs as they finish."""

    def assess(paths: list[Path]) -> Iterator[tuple[Path, dict]]:
        if not paths:
            return
        ray = _ray()
        if not ray.is_initialized():
            from .runtime import available_cores

            local = {} if address else {"num_cpus": workers * threads_per_worker if workers else available_cores()}
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR", **local)
        by_source = {str(p): p for p in paths}
        options = {k: v for k, v in gate_options.items() if k not in ("threads", "batch_size", "workers")}
        dataset = gate_dataset(list(by_source), workers=workers, threads_per_worker=threads_per_worker,
                               batch_size=batch_size, **options)
        for row in dataset.iter_rows():
            record = json.loads(row["record"])
            yield by_source[record.pop("source")], record

    return assess


def write_records_parquet(records: list[dict], path: str | Path) -> int:
    """Manifest records as one Parquet file (written whole, then renamed into place): flat
    columns ``file``, ``source``, ``side``, ``status``, ``reasons``, ``score`` and the full
    record as JSON in ``record`` (see :func:`_table`). Returns the number of rows."""
    from .extras import require

    require("ray", "Parquet output (--parquet)")
    import pyarrow.parquet as pq
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    pq.write_table(_table(records, ("file", "source", "side", "status", "reasons", "score", "record")), tmp)
    tmp.replace(path)
    return len(records)


def _table(records: list[dict], columns) -> Any:
    """Records (result or manifest dicts) as an Arrow table of flat columns: ``source``
    (a manifest's ``source_path``), ``reasons`` comma-separated, ``score`` a nullable float
    (null without a face, never NaN), ``record`` the whole record as JSON, the rest strings."""
    import pyarrow as pa

    def column(name):
        if name == "score":
            return pa.array([r.get("score") for r in records], pa.float64())
        if name == "reasons":
            values = [",".join(r.get("reasons", [])) for r in records]
        elif name == "record":
            values = [json.dumps(r) for r in records]
        elif name == "source":
            values = [_utf8(r.get("source_path") or r.get("source") or "") for r in records]
        else:
            values = [r.get(name) if name != "file" else _utf8(r.get("file", "")) for r in records]
        return pa.array(values, pa.string())

    return pa.table({name: column(name) for name in columns})


def _utf8(text: str) -> str:
    """Arrow strings must be valid UTF-8: a surrogate-escaped file name is written
    backslash-escaped (the exact name stays in ``record``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
