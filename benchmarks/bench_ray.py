"""Throughput of the Ray Data engine beside the local one, on this machine.

    python -m benchmarks.bench_ray --shared ../shared --photos 300

Every run assesses LFW photos with the default gate settings (MTCNN, all views). The local
engine is ``Gate(threads=2).assess_many``; the Ray engine is
:func:`facegate.distributed.gate_dataset` on a local Ray instance with 1 or 2 actors of one
CPU each. Each is run on ``--photos`` and on a tenth of them, so the steady rate,
``(N - n) / (T(N) - T(n))``, and the fixed cost of a run (start-up of actors and models,
``T(n) - n / rate``) come apart. Ray's own start (``ray.init``) is timed separately.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from benchmarks import emit

ROOT = Path(__file__).resolve().parents[1]


def _local(paths) -> float:
    from facegate import Gate

    t0 = time.perf_counter()
    gate = Gate(threads=2)
    for _ in gate.assess_many(paths):
        pass
    return time.perf_counter() - t0


def _ray(paths, workers: int) -> float:
    from facegate.distributed import gate_dataset

    t0 = time.perf_counter()
    rows = gate_dataset(paths, workers=workers).take_all()
    assert len(rows) == len(paths)
    return time.perf_counter() - t0


def _rate(run, paths) -> dict:
    small = paths[: max(1, len(paths) // 10)]
    t_small, t_all = run(small), run(paths)
    rate = (len(paths) - len(small)) / max(t_all - t_small, 1e-9)
    return {"photos_per_s": round(rate, 1), "fixed_cost_s": round(t_small - len(small) / rate, 2),
            f"wall_{len(paths)}_s": round(t_all, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    lfw = args.shared / "data" / "lfw-deepfunneled"
    paths = [str(p) for p in sorted(lfw.glob("*/*.jpg"))[:: 13233 // args.photos][: args.photos]]
    report = {"machine": f"{platform.machine()}, 2 cores", "photos": len(paths), "local (2 threads)": _rate(_local, paths)}
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    report["ray.init_s"] = round(time.perf_counter() - t0, 2)
    for workers in (1, 2):
        report[f"ray, {workers} actor(s) of 1 CPU"] = _rate(lambda p, w=workers: _ray(p, w), paths)
    ray.shutdown()
    emit(report, args.json)


if __name__ == "__main__":
    main()
