"""Folders of captures: find the images, filter them into accepted/rejected copies with a
resumable manifest.

Originals are only read: never moved, modified or deleted. A destination file that already
exists and differs is never overwritten; the copy gets a new name instead.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import ConfigError
from .gate import Gate
from .policy import Status

__all__ = ["SIDECAR_SUFFIXES", "find_images", "split_sidecars", "Manifest", "plan_filter", "run_filter", "FilterPlan",
           "FilterSummary"]

#: Files that travel beside photos (metadata, notes, manifests): listed as skipped, never
#: assessed as captures. Anything else is assessed, and gets a status even if it is no image.
SIDECAR_SUFFIXES = frozenset({".json", ".jsonl", ".txt", ".csv", ".xml", ".xmp", ".md", ".yaml", ".yml", ".log"})


def split_sidecars(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """``(captures, sidecars)``: sidecars are the files whose suffix is in :data:`SIDECAR_SUFFIXES`."""
    captures, sidecars = [], []
    for path in paths:
        (sidecars if Path(path).suffix.lower() in SIDECAR_SUFFIXES else captures).append(Path(path))
    return captures, sidecars


def find_images(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Every file under ``root`` (or ``root`` itself), sorted, hidden ones (``.name``) aside.

    Files are not judged by their suffix: each one gets a status, and one that does not
    decode is reported unreadable with the cause. Symbolic links to folders are not
    followed, so link loops cannot trap the walk."""
    root = Path(root)
    if root.is_file():
        return [root]
    excluded = {p.resolve() for p in exclude}
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if (here / d).resolve() not in excluded and not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                found.append(here / name)
    return found


class Manifest:
    """A JSON-lines record per processed file, appended and flushed as each file finishes.

    Each record says what it was made from: the source file's absolute path, size and
    modification time, and a fingerprint of the settings (:meth:`facegate.Gate.settings`).
    A run killed mid-write leaves at most one partial last line, which reading ignores,
    so a re-run redoes that one file and nothing else.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.done: dict[str, dict] = {}
        if self.path.exists():
            with self.path.open("rb") as fh:
                for raw in fh:
                    try:
                        record = json.loads(raw)
                    except ValueError:
                        continue  # a half-written last line from a killed run
                    self.done[record.get("source_path") or record["file"]] = record
        self._fh = None

    def finished(self, record: dict | None, stat: os.stat_result, dest_root: dict[str, Path]) -> bool:
        """Recorded for this very content (size and modification time), and its copy is in
        place (or there was nothing to copy)."""
        if record is None or record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
            return False
        if record.get("dry_run"):  # decided, but never copied
            return False
        dest = record.get("destination")
        return dest is None or (dest_root[record["side"]] / dest).exists()

    def append(self, record: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._truncate_partial_line()
            self._fh = self.path.open("a", encoding="utf-8")
        # ASCII escapes keep non-UTF-8 file names (surrogate-escaped) writable and round-trippable
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done[record["source_path"]] = record

    def _truncate_partial_line(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            self.path.write_bytes(data[: data.rfind(b"\n") + 1])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _place(source: Path, dest: Path, link: bool) -> Path:
    """Copy (or symlink) ``source`` to ``dest`` atomically; returns the path used, which
    differs from ``dest`` when another file already holds that name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = dest, 1
    while candidate.exists() or candidate.is_symlink():
        same = (
            candidate.is_symlink() and os.readlink(candidate) == str(source.resolve())
            if link
            else candidate.is_file() and filecmp.cmp(candidate, source, shallow=False)
        )
        if same:
            return candidate
        candidate = dest.with_name(f"{dest.stem} ({n}){dest.suffix}")
        n += 1
    tmp = candidate.with_name(f".{candidate.name}.facegate-tmp")
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    if link:
        os.symlink(source.resolve(), tmp)
    else:
        shutil.copy2(source, tmp)
    os.replace(tmp, candidate)
    return candidate


@dataclass
class FilterSummary:
    counts: dict[str, int] = field(default_factory=dict)
    skipped: int = 0

    @property
    def unreadable(self) -> int:
        return self.counts.get(Status.UNREADABLE.value, 0)

    def count(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1


@dataclass
class FilterPlan:
    """What a filter run will do: the files still to process, and what earlier runs did."""

    roots: dict[str, Path]
    manifest: Manifest
    todo: list[tuple[Path, str]]
    summary: FilterSummary
    sidecars: list[str] = field(default_factory=list)
    fingerprint: str = ""


def settings_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def plan_filter(source: Path, accepted: Path, rejected: Path, manifest_path: Path,
                settings: dict | None = None) -> FilterPlan:
    """Every capture under ``source``, less those an earlier run recorded for the same
    content (and copied); the run's own outputs (destinations, manifest) and sidecar files
    are never inputs.

    Raises:
        ConfigError: the manifest holds files of this source decided with other
            ``settings`` (:meth:`facegate.Gate.settings`): their copies would contradict
            the new decisions, so the run is refused, naming the difference.
    """
    source = Path(source)
    roots = {"accepted": Path(accepted), "rejected": Path(rejected)}
    manifest = Manifest(manifest_path)
    base = source if source.is_dir() else source.parent
    summary, todo = FilterSummary(), []
    own = Path(manifest_path).resolve()
    found = [p for p in find_images(source, exclude=roots.values()) if p.resolve() != own]
    captures, sidecars = split_sidecars(found)
    fingerprint = settings_fingerprint(settings or {})
    clashes = []
    for path in captures:
        rel = path.relative_to(base).as_posix()
        record = manifest.done.get(_source_key(path))
        try:
            stat = path.stat()
        except OSError:
            stat = None
        if record is not None and record.get("settings") != fingerprint:
            clashes.append(record)
        elif stat is not None and manifest.finished(record, stat, roots):
            summary.skipped += 1
            summary.count(record["status"])
        else:
            todo.append((path, rel))
    if clashes:
        raise ConfigError(_clash_message(manifest.path, clashes, settings or {}))
    return FilterPlan(roots, manifest, todo, summary, [p.relative_to(base).as_posix() for p in sidecars], fingerprint)


def _source_key(path: Path) -> str:
    return Path(os.path.abspath(path)).as_posix()


def _clash_message(manifest: Path, clashes: list[dict], settings: dict) -> str:
    old = clashes[0].get("policy")
    new = settings.get("policy")
    if old and new and old != new:
        what = "policy " + ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in sorted(new) if old.get(k) != new.get(k))
    else:
        what = "weights, views, backend or detector settings"
    return (f"{manifest}: {len(clashes)} file(s) of this source were decided with other settings ({what}), e.g. "
            f"{clashes[0]['file']}; their copies would contradict new decisions. Filter into new destination "
            "folders with a new --manifest, or move the old ones aside")


def run_filter(
    gate: Gate,
    plan: FilterPlan,
    *,
    link: bool = False,
    dry_run: bool = False,
    on_result: Callable[[dict], None] | None = None,
    assess: Callable[[list[Path]], Iterable[tuple[Path, dict]]] | None = None,
) -> FilterSummary:
    """Sort the planned files into the accepted or rejected folder (mirroring sub-folders)
    and record each in the manifest as soon as its copy is in place. ``dry_run`` records
    the decisions without copying anything (a later run without it copies them).

    ``assess`` maps the planned paths to ``(path, result.to_dict())`` pairs, in any order
    (default: ``gate.assess_many`` in this process; :func:`facegate.distributed.assess_on_ray`
    spreads the work over a Ray cluster). ``on_result`` gets each record as it is written."""
    summary = plan.summary
    relative = {path: rel for path, rel in plan.todo}
    if assess is None:
        def assess(paths):
            return ((p, r.to_dict()) for p, r in zip(paths, gate.assess_many(paths)))
    policy = gate.policy.to_dict()
    try:
        for path, record in assess([p for p, _ in plan.todo]):
            rel = relative[path]
            side = "accepted" if record["status"] == Status.ACCEPTED.value else "rejected"
            record = dict(record)
            record.pop("source", None)
            try:
                stat = path.stat()
                made_from = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            except OSError:
                made_from = {"size": None, "mtime_ns": None}
            made_from.update(source_path=_source_key(path), settings=plan.fingerprint, policy=policy)
            try:
                if dry_run:
                    destination = None
                    made_from["dry_run"] = True
                else:
                    dest = _place(path, plan.roots[side] / rel, link)
                    destination = dest.relative_to(plan.roots[side]).as_posix()
            except OSError as exc:  # vanished or unreadable source: recorded, nothing copied
                destination = None
                record["status"] = Status.UNREADABLE.value
                record["error"] = record["error"] or f"cannot copy ({exc.strerror or exc})"
            entry = {"file": rel, "side": side, "destination": destination, **made_from, **record}
            plan.manifest.append(entry)
            summary.count(record["status"])
            if on_result is not None:
                on_result(entry)
    finally:
        plan.manifest.close()
    return summary
