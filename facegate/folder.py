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
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import ConfigError
from .gate import Gate
from .images import link_problem, resolved
from .policy import Status
from .text import plural

__all__ = ["SIDECAR_SUFFIXES", "find_images", "split_sidecars", "Manifest", "plan_filter", "run_filter", "FilterPlan",
           "FilterSummary", "link_problem", "remove_output", "resolved"]

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
    excluded = {r for r in map(resolved, exclude) if r is not None}
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if resolved(here / d) not in excluded and not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                found.append(here / name)
    return found


#: Keys every record of a filter manifest has; a file whose records lack them is not one.
MANIFEST_KEYS = ("file", "source_path")


class Manifest:
    """A JSON-lines record per processed file, appended and flushed as each file finishes.

    Each record says what it was made from: the source file's absolute path, size and
    modification time, a fingerprint of the settings (:meth:`facegate.Gate.settings`) and
    the options the user chose (``made_with``), and where its copy went (and whether as a
    link). A record with ``"removed": true`` says an earlier output was taken away because
    its source is gone. A run killed mid-write leaves at most one partial last line, which
    reading ignores, so a re-run redoes that one file and nothing else.

    A file that is not a facegate manifest (text, other JSON lines) is refused, untouched:
    appending to it would spoil someone's file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.done: dict[str, dict] = {}
        self._fh = None
        self._lock = None
        if self.path.is_dir():
            raise ConfigError(f"{self.path} is a folder; --manifest names a file")
        if self.path.exists():
            data = self.path.read_bytes()
            lines = data.split(b"\n")
            for number, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    if number == len(lines) and not data.endswith(b"\n"):
                        continue  # a half-written last line from a killed run
                    raise ConfigError(f"{self.path}: not a facegate manifest (line {number} is not JSON); "
                                      "give --manifest a new file name (this file is left as it is)") from None
                if not isinstance(record, dict) or any(k not in record for k in MANIFEST_KEYS):
                    raise ConfigError(f"{self.path}: not a facegate manifest (line {number} is not a filter "
                                      "record); give --manifest a new file name (this file is left as it is)")
                if record.get("removed"):
                    self.done.pop(record["source_path"], None)
                else:
                    self.done[record.get("source_path") or record["file"]] = record

    # -- one run at a time ---------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def lock(self) -> None:
        """Hold the manifest for this process (an advisory lock the system releases when
        the process ends, however it ends); a second run on it is refused, naming the
        first. Two runs appending to one manifest would record each file twice."""
        try:
            import fcntl
        except ImportError:  # (Windows: no advisory locks here; runs are not guarded)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise ConfigError(f"{self.path} is in use by another facegate filter ({holder}); wait for it to "
                              "finish, or give this run its own --manifest") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._lock = fh

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # (closing releases the lock; the file stays, for the next run to lock)
            self._lock = None

    # -- records -------------------------------------------------------------------------
    def finished(self, record: dict | None, stat: os.stat_result, dest_root: dict[str, Path]) -> bool:
        """Recorded for this very content (size and modification time), and its copy is in
        place (or there was nothing to copy)."""
        if record is None or record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
            return False
        if record.get("dry_run"):  # decided, but never copied
            return False
        dest = record.get("destination")
        return dest is None or _exists(dest_root[record["side"]] / dest)

    def append(self, record: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._truncate_partial_line()
            self._fh = self.path.open("a", encoding="utf-8")
        # ASCII escapes keep non-UTF-8 file names (surrogate-escaped) writable and round-trippable
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if record.get("removed"):
            self.done.pop(record["source_path"], None)
        else:
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
        self.unlock()


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _place(source: Path, dest: Path, link: bool) -> Path:
    """Copy (or symlink) ``source`` to ``dest`` atomically; returns the path used, which
    differs from ``dest`` when another file already holds that name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = dest, 1
    while _exists(candidate):
        same = (
            candidate.is_symlink() and os.readlink(candidate) == str(source.resolve())
            if link
            else candidate.is_file() and not candidate.is_symlink() and filecmp.cmp(candidate, source, shallow=False)
        )
        if same:
            return candidate
        candidate = dest.with_name(f"{dest.stem} ({n}){dest.suffix}")
        n += 1
    tmp = candidate.with_name(f".{candidate.name}.facegate-tmp")
    if _exists(tmp):
        tmp.unlink()
    if link:
        os.symlink(source.resolve(), tmp)
    else:
        shutil.copy2(source, tmp)
    os.replace(tmp, candidate)
    return candidate


def _was_linked(record: dict, roots: dict[str, Path]) -> bool | None:
    """Whether the record's output is a link (records before 0.3 did not say: look)."""
    if "link" in record:
        return bool(record["link"])
    dest = record.get("destination")
    return None if dest is None else (roots[record["side"]] / dest).is_symlink()


def remove_output(record: dict, roots: dict[str, Path]) -> str | None:
    """Take away the output an earlier run made for ``record``, if it is still the one
    facegate wrote (a link to the source, or a copy of the size and time it was made with);
    returns why it was left in place, or None. Empty sub-folders it leaves are removed."""
    dest = record.get("destination")
    if dest is None:
        return None
    root = roots[record["side"]]
    path = root / dest
    if not _exists(path):
        return None
    if path.is_symlink():  # a link where the record says facegate made one (records before 0.3 did not say)
        own = record.get("link", True)
    else:
        try:
            stat = path.stat()
        except OSError:
            return f"{path} cannot be read"
        own = path.is_file() and stat.st_size == record.get("size") and stat.st_mtime_ns == record.get("mtime_ns")
    if not own:
        return f"{path} was left in place: it is not the copy facegate made (changed since)"
    path.unlink()
    parent = path.parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent
    return None


@dataclass
class FilterSummary:
    """What a run decided (``counts`` by status, ``skipped`` already done) and what it
    changed in the output folders (``changes`` by kind, ``left`` outputs it would have
    taken away but did not write)."""

    counts: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    changes: Counter = field(default_factory=Counter)
    left: list[str] = field(default_factory=list)

    @property
    def unreadable(self) -> int:
        return self.counts.get(Status.UNREADABLE.value, 0)

    def count(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1


@dataclass
class FilterPlan:
    """What a filter run will do: the files still to assess, links that cannot be read,
    outputs to make again in the other link mode, records whose source is gone, and what
    earlier runs did."""

    roots: dict[str, Path]
    manifest: Manifest
    todo: list[tuple[Path, str]]
    summary: FilterSummary
    sidecars: list[str] = field(default_factory=list)
    fingerprint: str = ""
    broken: list[tuple[Path, str, str]] = field(default_factory=list)
    relink: list[dict] = field(default_factory=list)
    gone: list[dict] = field(default_factory=list)
    made_with: dict = field(default_factory=dict)


def settings_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


#: The settings a user chooses by an option (named in a refused re-run); the rest of
#: :meth:`facegate.Gate.settings` follows from these and the policy.
CHOSEN_SETTINGS = ("weights", "views", "backend", "detector", "look_again")


def plan_filter(source: Path, accepted: Path, rejected: Path, manifest_path: Path,
                settings: dict | None = None, *, link: bool = False, lock: bool = True) -> FilterPlan:
    """Every capture under ``source``, less those an earlier run recorded for the same
    content (and placed as asked: copy or link); the run's own outputs (destinations,
    manifest) and sidecar files are never inputs. Links that cannot be read (loops,
    dangling) are listed to be recorded as such; records of sources that are gone are
    listed so that their outputs go too. The manifest is locked for this run (``lock``).

    Raises:
        ConfigError: the manifest is another kind of file, another run holds it, or it
            holds files of this source decided with other ``settings``
            (:meth:`facegate.Gate.settings`): their copies would contradict the new
            decisions, so the run is refused, naming the difference.
    """
    source = Path(source)
    roots = {"accepted": Path(accepted), "rejected": Path(rejected)}
    manifest = Manifest(manifest_path)
    if lock:
        manifest.lock()
        manifest = _reread(manifest)  # what the run before ours left, read under the lock
    try:
        return _plan(source, roots, manifest, settings or {}, link)
    except BaseException:
        manifest.close()
        raise


def _reread(held: Manifest) -> Manifest:
    fresh = Manifest(held.path)
    fresh._lock, held._lock = held._lock, None
    return fresh


def _plan(source: Path, roots: dict[str, Path], manifest: Manifest, settings: dict, link: bool) -> FilterPlan:
    base = source if source.is_dir() else source.parent
    summary = FilterSummary()
    own = {p for p in (resolved(manifest.path), resolved(manifest.lock_path)) if p is not None}
    found = [p for p in find_images(source, exclude=roots.values()) if resolved(p) not in own]
    captures, sidecars = split_sidecars(found)
    fingerprint = settings_fingerprint(settings)
    made_with = {k: settings.get(k) for k in CHOSEN_SETTINGS if k in settings}
    plan = FilterPlan(roots, manifest, [], summary, [p.relative_to(base).as_posix() for p in sidecars], fingerprint,
                      made_with=made_with)
    clashes = []
    seen = set()
    for path in captures:
        rel = path.relative_to(base).as_posix()
        key = _source_key(path)
        seen.add(key)
        record = manifest.done.get(key)
        if record is not None and record.get("settings") != fingerprint:
            clashes.append(record)
            continue
        problem = link_problem(path)
        if problem is not None:
            if record is not None and record.get("error") == problem:
                summary.skipped += 1
                summary.count(record["status"])
            else:
                plan.broken.append((path, rel, problem))
            continue
        try:
            stat = path.stat()
        except OSError:
            stat = None
        if stat is not None and manifest.finished(record, stat, roots):
            if record.get("destination") is not None and _was_linked(record, roots) != link:
                plan.relink.append(record)
            else:
                summary.skipped += 1
                summary.count(record["status"])
        else:
            plan.todo.append((path, rel))
    if clashes:
        raise ConfigError(_clash_message(manifest.path, clashes, settings))
    if source.is_dir():  # (one file named alone says nothing about its folder's other files)
        prefix = _source_key(base).rstrip("/") + "/"
        plan.gone = [r for k, r in manifest.done.items() if k not in seen and k.startswith(prefix)]
    return plan


def _source_key(path: Path) -> str:
    return Path(os.path.abspath(path)).as_posix()


def _clash_message(manifest: Path, clashes: list[dict], settings: dict) -> str:
    """Names what the user changed (an option's value), and what followed from it."""
    record = clashes[0]
    before, now = record.get("made_with") or {}, {k: settings.get(k) for k in CHOSEN_SETTINGS}

    def shown(value):
        return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    chosen = [f"{k} {shown(before[k])} -> {shown(now[k])}" for k in CHOSEN_SETTINGS
              if k in before and before[k] != now[k]]
    old, new = record.get("policy") or {}, settings.get("policy") or {}
    changed = [k for k in sorted(new) if k in old and old.get(k) != new.get(k)]

    def change(k):  # requirements by component name: their bounds are the profile's to read
        if k == "requirements":
            parts = sorted(c for c in set(old[k]) | set(new[k]) if old[k].get(c) != new[k].get(c))
            return f"requirements on {', '.join(parts)}"
        return f"{k} {old.get(k)} -> {new.get(k)}"

    if "profile" in changed:  # a profile brings its own settings: name it, then what came with it
        rest = [k for k in changed if k != "profile"]
        chosen.append(f"profile {old['profile']} -> {new['profile']}")
        policy = [change(k) if k == "requirements" else k for k in rest]
    else:
        policy = [change(k) for k in changed]
    if chosen:
        what = "; ".join(chosen) + (f" (and with it the policy's {', '.join(policy)})" if policy else "")
    elif policy:
        what = "policy " + ", ".join(policy)
    else:
        what = "weights, views, backend or detector settings"
    files = f"{plural(len(clashes), 'file')} of this source {'was' if len(clashes) == 1 else 'were'}"
    return (f"{manifest}: {files} decided with other settings ({what}), e.g. "
            f"{record['file']}; their copies would contradict new decisions. Filter into new destination "
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
    and record each in the manifest as soon as its copy is in place; afterwards the output
    folders hold exactly what the manifest says. ``dry_run`` records the decisions without
    copying or removing anything (a later run without it copies them).

    A file decided again (its content changed) loses its earlier output before it gets
    its new one; a file whose source is gone loses its output; outputs made in the other
    link mode are made again as asked. Only outputs facegate made are taken away (a copy of
    the recorded size and time, or a link to the source); anything else is left, and said.

    ``assess`` maps the planned paths to ``(path, result.to_dict())`` pairs, in any order
    (default: ``gate.assess_many`` in this process; :func:`facegate.distributed.assess_on_ray`
    spreads the work over a Ray cluster). ``on_result`` gets each record as it is written."""
    if assess is None:
        def assess(paths):
            return ((p, r.to_dict()) for p, r in zip(paths, gate.assess_many(paths)))
    run = _FilterRun(plan, gate.policy.to_dict(), link=link, dry_run=dry_run, on_result=on_result)
    try:
        for record in plan.gone:  # sources deleted since: their outputs go too
            run.remove_gone(record)
        for path, rel, problem in plan.broken:
            run.record_broken(path, rel, problem)
        for record in plan.relink:  # the same decision, placed again as a copy or a link as asked
            run.place_again(record)
        relative = dict(plan.todo)
        for path, record in assess([p for p, _ in plan.todo]):
            run.place_decided(path, relative[path], record)
    finally:
        plan.manifest.close()
    return plan.summary


class _FilterRun:
    """The steps of one :func:`run_filter`: every change to the output folders is followed by
    its manifest record, so the two agree after each step (and after an interruption)."""

    def __init__(self, plan: FilterPlan, policy: dict, *, link: bool, dry_run: bool, on_result):
        self.plan, self.policy, self.link, self.dry_run, self.on_result = plan, policy, link, dry_run, on_result
        self.manifest, self.summary, self.roots = plan.manifest, plan.summary, plan.roots

    def take_away(self, record: dict) -> None:
        if self.dry_run:
            return
        left = remove_output(record, self.roots)
        if left:
            self.summary.left.append(left)

    def made_from(self, path: Path) -> dict:
        """What the record says the decision was made from: the source as it was, the settings."""
        try:
            stat = path.stat()
            out = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        except OSError:
            out = {"size": None, "mtime_ns": None}
        out.update(source_path=_source_key(path), settings=self.plan.fingerprint, made_with=self.plan.made_with,
                   policy=self.policy, link=self.link)
        return out

    def write(self, entry: dict, *, tell: bool = True) -> None:
        self.manifest.append(entry)
        self.summary.count(entry["status"])
        if tell and self.on_result is not None:
            self.on_result(entry)

    def remove_gone(self, record: dict) -> None:
        self.take_away(record)
        if not self.dry_run:
            self.manifest.append({"file": record["file"], "source_path": record["source_path"], "removed": True,
                                  "side": record.get("side"), "destination": None})
            self.summary.changes["removed (source gone)"] += 1

    def record_broken(self, path: Path, rel: str, problem: str) -> None:
        earlier = self.manifest.done.get(_source_key(path))
        if earlier is not None:
            self.take_away(earlier)
        self.write({"file": rel, "side": "rejected", "destination": None, **self.made_from(path),
                    "status": Status.UNREADABLE.value, "reasons": [], "score": None, "faces": [], "error": problem})

    def place_again(self, record: dict) -> None:
        self.take_away(record)
        if self.dry_run:
            return
        side = record["side"]
        dest = _place(Path(record["source_path"]), self.roots[side] / record["file"], self.link)
        self.write({**record, "destination": dest.relative_to(self.roots[side]).as_posix(), "link": self.link},
                   tell=False)
        self.summary.changes["made again as links" if self.link else "made again as copies"] += 1

    def place_decided(self, path: Path, rel: str, record: dict) -> None:
        side = "accepted" if record["status"] == Status.ACCEPTED.value else "rejected"
        record = dict(record)
        record.pop("source", None)
        earlier = self.manifest.done.get(_source_key(path))
        if earlier is not None and earlier.get("destination") is not None:
            self.take_away(earlier)  # before the new output, which may want its name
            if not self.dry_run:
                self.summary.changes[f"moved {earlier['side']} -> {side}" if earlier["side"] != side
                                     else "decided again"] += 1
        made_from = self.made_from(path)
        try:
            if self.dry_run:
                destination = None
                made_from["dry_run"] = True
            else:
                destination = _place(path, self.roots[side] / rel, self.link).relative_to(self.roots[side]).as_posix()
        except OSError as exc:  # vanished or unreadable source: recorded, nothing copied
            destination = None
            record["status"] = Status.UNREADABLE.value
            record["error"] = record["error"] or f"cannot copy ({exc.strerror or exc})"
        self.write({"file": rel, "side": side, "destination": destination, **made_from, **record})
