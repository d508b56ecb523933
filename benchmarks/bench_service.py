"""`facegate serve` under load: requests per second and latency (p50, p99) at 1, 4 and 16
concurrent clients, beside `Gate.assess_many` in one process on the same photos, so the
service's overhead shows as a ratio; each `--max-batch` given is a server of its own, to see
whether assessing concurrent requests together helps.

    python -m benchmarks.bench_service --shared ../shared --photos 60 --max-batch 1 8

The server is `facegate serve` started as a new process (`--threads` its budget); the
clients are threads in this process, each with its own HTTP connection, sending the photos
in turn (every client a different order), after one warm-up pass. The in-process figure is
`Gate(threads=...).assess_many` over the same photos after a warm-up, in a process of its
own (so the two never share cores at once).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_IN_PROCESS = """
import json, sys, time
from facegate import Gate
gate = Gate(threads=int(sys.argv[1]))
paths = sys.argv[2:]
list(gate.assess_many(paths[:8]))
t0 = time.perf_counter()
for _ in gate.assess_many(paths):
    pass
print(json.dumps(len(paths) / (time.perf_counter() - t0)))
"""


def pick_photos(shared: Path | None, count: int) -> list[Path]:
    """LFW photos of different people (one each) when ../shared is there, else the fixtures."""
    lfw = (shared / "data" / "lfw-deepfunneled") if shared else None
    if lfw and lfw.is_dir():
        people = sorted(p for p in lfw.iterdir() if p.is_dir())
        step = max(1, len(people) // count)
        return [sorted(p.glob("*.jpg"))[0] for p in people[::step][:count]]
    fixtures = sorted((ROOT / "tests" / "fixtures").glob("*.jpg"))
    return (fixtures * (count // len(fixtures) + 1))[:count]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(threads: int, max_batch: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "facegate"), "serve", "--port", str(port),
                               "--threads", str(threads), "--max-batch", str(max_batch)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError("facegate serve did not become healthy")
        time.sleep(0.1)


def load(url: str, bodies: list[bytes], clients: int, requests: int) -> dict:
    """``clients`` threads share ``requests`` POSTs; latency of each, wall time of all."""
    import httpx

    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    failures = []

    def client(k: int):
        with httpx.Client(timeout=120) as http:
            http.post(url + "/v1/assess", content=bodies[k % len(bodies)])  # warm the connection
            barrier.wait()
            for n in counter:
                body = bodies[(n * 7 + k) % len(bodies)]
                t0 = time.perf_counter()
                response = http.post(url + "/v1/assess", content=body)
                took = time.perf_counter() - t0
                with lock:
                    latencies.append(took)
                    if response.status_code != 200:
                        failures.append(response.status_code)

    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "failures": len(failures),
            "requests_per_s": len(latencies) / wall,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--requests", type=int, default=120, help="requests per concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    photos = pick_photos(args.shared, args.photos)
    bodies = [p.read_bytes() for p in photos]
    in_process = json.loads(subprocess.run([sys.executable, "-c", _IN_PROCESS, str(args.threads), *map(str, photos)],
                                           capture_output=True, text=True, check=True, cwd=ROOT).stdout)
    rows = []
    for max_batch in args.max_batch:
        server, url = start_server(args.threads, max_batch)
        try:
            for clients in args.clients:
                row = {"max_batch": max_batch, **load(url, bodies, clients, args.requests)}
                row["vs_in_process"] = row["requests_per_s"] / in_process
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            server.terminate()
            server.wait(30)
    result = {"photos": len(photos), "threads": args.threads, "in_process_photos_per_s": in_process, "rows": rows,
              "machine": f"{os.cpu_count()} CPU cores"}
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


def render(result: dict) -> str:
    lines = [f"`Gate.assess_many` in one process: {result['in_process_photos_per_s']:.1f} photos/s "
             f"({result['photos']} photos, {result['threads']} threads)", "",
             "| --max-batch | clients | requests/s | p50 ms | p99 ms | vs in-process | failures |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['max_batch']} | {r['clients']} | {r['requests_per_s']:.1f} | {r['p50_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {r['vs_in_process']:.2f} | {r['failures']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
