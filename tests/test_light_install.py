"""The runtime install (``pip install facegate``, no extras): it imports no torch, decides
every capture as the full install does, and a feature whose extra is missing says which
extra to install in one line (exit 2), never with an ImportError.

The runtime-only environment is built once (a virtual environment with ``pip install -e``
of this checkout, core requirements only) and kept under ``.pytest_cache`` keyed by
``setup.cfg``, so later runs reuse it; ``FACEGATE_LIGHT_VENV`` names another place.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT, SHARED

#: Run inside the light environment: assess the paths, report the results and whether any
#: torch package was imported, or is installed at all.
ASSESS = """
import importlib.util, json, sys
from facegate import Gate
gate = Gate(threads=2)
results = [{"source": r.source, "status": r.status.value, "reasons": list(r.reasons), "score": r.score}
           for r in gate.assess_many(sys.argv[1:])]
heavy = ("torch", "torchvision", "facenet_pytorch")
print(json.dumps({"results": results,
                  "imported": sorted(m for m in sys.modules if m.split(".")[0] in heavy),
                  "installed": [m for m in heavy if importlib.util.find_spec(m) is not None]}))
"""


def runtime_venv(extras: str = "", env_name: str = "FACEGATE_LIGHT_VENV") -> Path:
    """A virtual environment with this checkout installed with ``extras`` only (built once,
    kept under .pytest_cache keyed by setup.cfg); its python."""
    key = hashlib.sha256((ROOT / "setup.cfg").read_bytes()).hexdigest()[:12]
    name = f"light{'-' + extras if extras else ''}-venv-{key}"
    venv = Path(os.environ.get(env_name) or ROOT / ".pytest_cache" / name)
    python = venv / "bin" / "python"
    if not (venv / "installed").is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        target = f"{ROOT}[{extras}]" if extras else str(ROOT)
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "-e", target], capture_output=True, text=True)
        assert done.returncode == 0, f"pip install -e {target} failed:\n{done.stderr[-3000:]}"
        (venv / "installed").write_text(key + "\n")
    return python


@pytest.fixture(scope="module")
def light_python() -> Path:
    return runtime_venv()


def photos() -> list[str]:
    """The fixtures, and where ../shared is present a spread of real captures: camera photos
    (decoded reduced), LFW photos of several people, the group photo."""
    chosen = sorted(str(p) for p in FIXTURES.glob("*.jpg"))
    if (SHARED / "data").is_dir():
        chosen += sorted(str(p) for p in (SHARED / "data" / "large-photos").glob("*.jpg"))[:4]
        lfw = sorted((SHARED / "data" / "lfw-deepfunneled").glob("*/*_0001.jpg"))
        chosen += [str(p) for p in lfw[:: max(1, len(lfw) // 20)][:20]]
        chosen += [str(p) for p in (SHARED / "data" / "multiface").glob("*.jpg")]
    return chosen


def run_light(light_python: Path, *args: str, stdin: bytes | None = None, cwd: Path = ROOT
              ) -> subprocess.CompletedProcess:
    """``python ARGS`` in the light environment, or its ``facegate`` command for ``facegate ARGS``."""
    command = [str(light_python.parent / "facegate"), *args[1:]] if args[0] == "facegate" else [str(light_python), *args]
    return subprocess.run(command, capture_output=True, cwd=cwd, input=stdin, timeout=300)


def test_the_runtime_installs_no_torch_and_decides_as_the_full_install(light_python, gate):
    paths = photos()
    done = run_light(light_python, "-c", ASSESS, *paths)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    light = json.loads(done.stdout)
    assert light["installed"] == [], f"the runtime install brought {light['installed']}"
    assert light["imported"] == []
    full = list(gate.assess_many(paths))
    assert len(light["results"]) == len(full) == len(paths)
    for mine, theirs in zip(light["results"], full):
        assert mine["source"] == theirs.source
        assert (mine["status"], mine["reasons"]) == (theirs.status.value, list(theirs.reasons)), mine["source"]
        if theirs.score is None:
            assert mine["score"] is None, mine["source"]
        else:
            assert abs(mine["score"] - theirs.score) <= 0.01, mine["source"]
    assert {r["status"] for r in light["results"]} >= {"accepted", "rejected", "no_face"}


@pytest.mark.parametrize("args, extra", [
    (["score", str(FIXTURES / "tony_blair_1.jpg"), "--backend", "torch"], "torch"),
    (["calibrate", str(FIXTURES), "--target-fnmr", "0.05", "--recognizer", str(FIXTURES / "colin_powell_1.jpg"),
      "--out", "never-written.json"], "torch"),
    (["export", "--out", "never-written.onnx"], "onnx"),
    (["filter", str(FIXTURES), "--accepted", "acc", "--rejected", "rej", "--engine", "ray"], "ray"),
    (["filter", str(FIXTURES), "--accepted", "acc", "--rejected", "rej", "--parquet", "out.parquet"], "ray"),
    (["serve", "--port", "0"], "serve"),
])
def test_a_feature_without_its_extra_names_the_extra_in_one_line(light_python, args, extra, tmp_path):
    done = run_light(light_python, "facegate", *args, cwd=tmp_path)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"pip install 'facegate[{extra}]'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # told before anything was written


def test_training_without_its_extra_says_so_in_one_line(light_python):
    done = run_light(light_python, "-m", "train.release", "--help")
    err = done.stderr.decode()
    assert done.returncode == 2 and err.count("\n") == 1 and "facegate[train]" in err, err


def test_the_runtime_prints_the_weights_terms_and_reads_standard_input(light_python):
    info = run_light(light_python, "facegate", "info")
    assert info.returncode == 0, info.stderr.decode()
    assert "non-commercial research use only" in info.stdout.decode()
    assert "code: MIT" in info.stdout.decode()
    piped = run_light(light_python, "facegate", "score", "--format", "jsonl", "-",
                      stdin=(FIXTURES / "tony_blair_1.jpg").read_bytes())
    assert piped.returncode == 0, piped.stderr.decode()
    record = json.loads(piped.stdout)
    assert (record["source"], record["status"]) == ("<stdin>", "accepted")


def test_the_service_runs_on_the_runtime_with_its_own_extra_only(gate):
    """`pip install facegate[serve]`: no torch, and /v1/assess answers as the gate decides."""
    import socket

    python = runtime_venv("serve", "FACEGATE_SERVE_VENV")
    assert run_light(python, "-c", "import importlib.util as u; assert u.find_spec('torch') is None").returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(python.parent / "facegate"), "serve", "--port", str(port), "--threads", "2"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ask = ("import json, sys, urllib.request\n"
               "url = sys.argv[1]\n"
               "for _ in range(300):\n"
               "    try:\n"
               "        urllib.request.urlopen(url + '/v1/health', timeout=2); break\n"
               "    except Exception: __import__('time').sleep(0.1)\n"
               "request = urllib.request.Request(url + '/v1/assess', data=open(sys.argv[2], 'rb').read())\n"
               "print(urllib.request.urlopen(request, timeout=60).read().decode())\n")
        photo = FIXTURES / "tony_blair_1.jpg"
        done = run_light(python, "-c", ask, f"http://127.0.0.1:{port}", str(photo))
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        record = json.loads(done.stdout)
        expected = gate.assess(photo).to_dict()
        assert {k: v for k, v in record.items() if k != "source"} == {k: v for k, v in expected.items() if k != "source"}
    finally:
        server.terminate()
        assert server.wait(30) == 0
