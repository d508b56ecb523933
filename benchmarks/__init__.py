"""Benchmarks: each module a ``python -m benchmarks.<name>`` command."""

from __future__ import annotations

import json
from pathlib import Path


def emit(report: dict, path: Path | None) -> None:
    """Print a benchmark's report as JSON, and write it to ``path`` when one is given."""
    text = json.dumps(report, indent=1)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
