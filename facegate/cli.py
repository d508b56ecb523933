"""The ``facegate`` command: a thin layer over the API.

Exit codes: 0 every input processed; 1 some inputs unreadable, or weights, a source or a
file that could not be used; 2 usage error (bad options or settings); 130 interrupted
(Ctrl-C) during `filter`, which resumes when run again. Errors are mapped to
exit codes in one place, :class:`_Group`.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import click

from .version import __version__
from .errors import ConfigError, FacegateError
from .extras import MissingExtraError, missing, require
from .policy import PROFILE_NAMES, Policy, Status
from .text import plural

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class _Group(click.Group):
    """Maps facegate's errors to exit codes: a caller's mistake is a usage error (2); weights,
    sources or files that cannot be used are failures (1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        except MissingExtraError as exc:  # a usage error too, told in one line
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except FacegateError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)


def gate_options(*, views: str = "full", detector: str = "mtcnn", batch: bool = True):
    """The options that build a :class:`facegate.Gate`, declared once; defaults per command."""

    def decorate(fn):
        options = [
            click.option("--profile", type=click.Choice(list(PROFILE_NAMES)), default=None,
                         help="Named policy: verification (default), enrollment (strict, ISO/ICAO portrait "
                              "practice) or surveillance (lenient); a --policy file changes its settings."),
            click.option("--policy", type=click.Path(exists=True, dir_okay=False),
                         help="Policy file (from `facegate calibrate`)."),
            click.option("--threshold", type=click.FloatRange(0, 100),
                         help="Accept at or above this score (overrides the policy)."),
            click.option("--weights", type=click.Path(exists=True, file_okay=False),
                         help="Weights folder (default: shipped weights)."),
            click.option("--views", type=click.Choice(["none", "flip", "full"]), default=views, show_default=True,
                         help="Test-time views."),
            click.option("--threads", type=click.IntRange(1), default=None,
                         help="Threads for the whole process [default: every available core]."),
            click.option("--detector", type=click.Choice(["mtcnn", "yunet"]), default=detector, show_default=True,
                         help="Face detector: MTCNN, or the faster YuNet."),
            click.option("--backend", type=click.Choice(["onnx", "torch"]), default="onnx", show_default=True,
                         help="onnxruntime (no torch), or PyTorch and facenet-pytorch."),
            click.option("--allow-multiple-faces", is_flag=True,
                         help="Do not reject a capture because other sizeable faces are in view (bystanders expected)."),
            click.option("--max-pixels", type=click.IntRange(1), default=None,
                         help="Refuse images of more pixels, as possible decompression bombs [default: 250000000]."),
        ]
        if batch:
            options.append(click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True,
                                        help="Faces scored per forward pass."))
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _gate_options(policy=None, threshold=None, weights=None, views="full", threads=None, detector="mtcnn",
                  backend="onnx", batch_size=16, allow_multiple_faces=False, profile=None, max_pixels=None) -> dict:
    """The shared options as :class:`facegate.Gate` arguments (the policy resolved here)."""
    pol = Policy.choose(policy, profile).with_options(threshold=threshold, allow_multiple_faces=allow_multiple_faces)
    from .capture import CaptureSettings

    return {"policy": pol, "weights": weights, "views": views, "threads": threads, "batch_size": batch_size,
            "backend": backend, "capture": CaptureSettings(detector=detector, backend=backend, max_pixels=max_pixels)}


def _gate(**options):
    from .gate import Gate

    return Gate(**_gate_options(**options))


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="facegate")
def main():
    """Gate face captures: accept or reject each with a reason before recognition."""
    # File names that are not valid UTF-8 must print, not crash the run.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


#: The name a capture read from standard input (``-``) is reported by.
STDIN_NAME = "<stdin>"


def _collect(paths, *, stdin: bool = False, allow_empty: bool = False) -> list:
    """Files named, and every file in folders named (sidecars in folders skipped, and said);
    with ``stdin``, ``-`` is one image read from standard input (``curl ... | facegate score -``).

    The rule `score` and `filter` share: a path that does not exist is a usage error (click
    checks it: exit 2); folders with no image in them are nothing to do, said on stderr
    (``allow_empty``: exit 0, as `filter` on an empty folder), or a usage error for commands
    that need captures (`calibrate`)."""
    from .folder import find_images, split_sidecars

    files, skipped = [], []
    for p in paths:
        path = Path(p)
        if stdin and p == "-":
            files.append(_read_stdin())
        elif path.is_dir():
            captures, sidecars = split_sidecars(find_images(path))
            files.extend(captures)
            skipped.extend(sidecars)
        else:
            files.append(path)
    if skipped:
        click.echo(f"skipped {plural(len(skipped), 'non-image file')}: {', '.join(str(p) for p in skipped[:5])}"
                   f"{' ...' if len(skipped) > 5 else ''}", err=True)
    if not files:
        if not allow_empty:
            raise click.UsageError("no image files found in the given paths")
        click.echo(f"0 files: no image files in {', '.join(map(str, paths))}", err=True)
    return files


def _read_stdin():
    """The image piped to standard input, as an encoded file (decoded exactly as a file is)."""
    from .images import EncodedImage

    if sys.stdin is None or sys.stdin.isatty():
        raise click.UsageError("'-' reads an image from standard input, but nothing is piped in "
                               "(e.g. curl -s URL | facegate score -)")
    return EncodedImage(STDIN_NAME, sys.stdin.buffer.read())


# -- output formats: one row dict per capture, written as a table, JSON lines or CSV ----------

class _Rows:
    """Writes row dicts to stdout in one of three formats, flushing each row."""

    def __init__(self, fmt: str, columns: list[str], widths: dict[str, int]):
        self.fmt, self.columns, self.widths = fmt, columns, widths
        self.out = sys.stdout
        if fmt == "csv":
            self._csv = csv.DictWriter(self.out, fieldnames=columns, extrasaction="ignore")
            self._csv.writeheader()
        elif fmt == "table":
            self.out.write(self._table_line({c: "reasons: prompt" if c == "why" else c for c in columns}) + "\n")

    def _table_line(self, row: dict) -> str:
        return "  ".join(f"{str(row[c]):<{self.widths.get(c, 0)}}" for c in self.columns).rstrip()

    def write(self, row: dict, record: dict | None = None) -> None:
        if self.fmt == "jsonl":
            self.out.write(json.dumps(record if record is not None else row, ensure_ascii=False) + "\n")
        elif self.fmt == "csv":
            self._csv.writerow(row)
        else:
            self.out.write(self._table_line(row) + "\n")
        self.out.flush()


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table", show_default=True,
              help="A table for people; JSON lines (the API's own records) or CSV for programs.")
@click.option("--aligned", is_flag=True,
              help="Inputs are aligned face crops: decided on the score alone, without detection.")
@click.option("--all-faces", is_flag=True,
              help="Also decide every face of each capture, alone (a row per face after the capture's; "
                   "'every_face' in JSON lines); the main face is marked.")
@gate_options()
def score(paths, fmt, aligned, all_faces, **options):
    """Score captures: one line per image (files or folders, searched recursively; - reads
    one image from standard input)."""
    if list(paths).count("-") > 1:
        raise click.UsageError("'-' (standard input) can be given once")
    if aligned and all_faces:
        raise click.UsageError("--all-faces needs detection; --aligned crops are one face each")
    files = _collect(paths, stdin=True, allow_empty=True)
    if not files:
        sys.exit(EXIT_OK)
    gate = _gate(**options)
    # A table keeps its columns straight: the fixed-width ones first, the source as wide as the
    # longest (the files are known before the first row), and what varies most (reasons and
    # prompt, or the error) last, where its length moves nothing after it.
    columns = (["status", "score", "faces", "source", "why"] if fmt == "table"
               else ["source", "status", "reasons", "score", "faces", "box", "error", "prompt"])
    longest = max([len("source"), *(len(f.name if hasattr(f, "data") else str(f)) for f in files)])
    if all_faces:
        longest += len("   face 10/10 (main)")
    rows = _Rows(fmt, columns, {"status": 11, "score": 6, "faces": 5, "source": min(longest, 72)})
    unreadable = 0
    table = fmt == "table"

    def row(decided, source, faces, face_dict, error=None):
        reasons = ",".join(decided.reasons)
        why = error or (f"{reasons}: {decided.prompt}" if reasons and decided.prompt else reasons or decided.prompt or "")
        return {"status": decided.status.value, "source": source, "faces": faces,
                "score": ("" if decided.score is None else f"{decided.score:.1f}" if table
                          else round(decided.score, 2)),
                "reasons": reasons if table else ";".join(decided.reasons), "why": why,
                "box": "" if face_dict is None else " ".join(map(str, face_dict["box"])),
                "error": error or "", "prompt": decided.prompt or ""}

    results = gate.assess_crops(files) if aligned else gate.assess_many(files, all_faces=all_faces)
    for result in results:
        unreadable += result.status is Status.UNREADABLE
        record = result.to_dict()
        rows.write(row(result, result.source, len(result.faces), record["face"], result.error), record)
        if fmt != "jsonl":  # JSON lines carry them in the capture's record
            for k, face in enumerate(result.every_face or (), 1):
                label = f"{result.source} face {k}/{len(result.every_face)}{' (main)' if face.primary else ''}"
                rows.write(row(face, ("  " if table else "") + label, 1, face.face.to_dict()))
    sys.exit(EXIT_FAILED if unreadable else EXIT_OK)


@main.command("filter")
@click.argument("src", type=click.Path(exists=True))
@click.option("--accepted", required=True, type=click.Path(file_okay=False), help="Folder for accepted captures.")
@click.option("--rejected", required=True, type=click.Path(file_okay=False), help="Folder for everything else.")
@click.option("--manifest", type=click.Path(dir_okay=False), default=None,
              help="JSON-lines manifest [default: facegate-manifest.jsonl beside the accepted folder].")
@click.option("--link", is_flag=True, help="Make symbolic links to the originals instead of copies.")
@click.option("--dry-run", is_flag=True,
              help="Decide and write the manifest only, copying nothing (a later run without it copies).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where captures are assessed: this process, or Ray actors (pip install \"facegate[ray]\").")
@click.option("--address", default=None,
              help="With --engine ray: the cluster to join ('auto': the one this machine belongs to) "
                   "[default: start a local Ray instance].")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="With --engine ray: actors, each with one Gate [default: one per --threads-per-worker CPUs].")
@click.option("--threads-per-worker", type=click.IntRange(1), default=1, show_default=True,
              help="With --engine ray: CPUs (and threads) per actor.")
@click.option("--parquet", type=click.Path(dir_okay=False), default=None,
              help="Also write the manifest's records as one Parquet file (needs pyarrow: the ray extra).")
@gate_options()
def filter_cmd(src, accepted, rejected, manifest, link, dry_run, engine, address, workers, threads_per_worker,
               parquet, **options):
    """Sort an enrollment folder into accepted and rejected copies.

    Originals are never moved or changed; sub-folders are mirrored; an interrupted run
    resumes where it stopped when run again with the same arguments.
    """
    import signal

    from .folder import plan_filter, resolved, run_filter

    if parquet:  # told before the run (and before any folder is made), not after it
        require("ray", "--parquet")
    if engine == "ray":
        require("ray", "the Ray engine (--engine ray)")
    accepted, rejected = Path(accepted), Path(rejected)
    src_path = resolved(Path(src))
    for dest in (accepted, rejected):
        if resolved(dest) == src_path:
            raise click.UsageError(f"{dest} is the source folder; choose another destination")
    if resolved(accepted) == resolved(rejected):
        raise click.UsageError("--accepted and --rejected are the same folder; give each its own")
    manifest_path = Path(manifest) if manifest else _default_manifest(accepted)
    for option, path in (("--accepted", accepted), ("--rejected", rejected)):
        _check_writable(option, path, folder=True, create=not dry_run)
    _check_writable("--manifest", manifest_path, folder=False, create=True)
    from .gate import Gate

    gate_kwargs = _gate_options(**options)
    gate = Gate(**gate_kwargs)
    plan = plan_filter(Path(src), accepted, rejected, manifest_path, gate.settings(), link=link)

    def terminated(signum, frame):  # a service manager's stop: the same as Ctrl-C, told the same way
        raise _Terminated()

    signal.signal(signal.SIGTERM, terminated)
    assess = None
    if engine == "ray":
        from .distributed import assess_on_ray

        assess = assess_on_ray(gate_kwargs, address=address, workers=workers, threads_per_worker=threads_per_worker,
                               batch_size=gate_kwargs["batch_size"])
    err = sys.stderr
    try:
        if err.isatty():
            with click.progressbar(length=len(plan.todo), label="filtering", file=err, show_pos=True) as bar:
                summary = run_filter(gate, plan, link=link, dry_run=dry_run, on_result=lambda _r: bar.update(1),
                                     assess=assess)
        else:
            summary = run_filter(gate, plan, link=link, dry_run=dry_run, assess=assess)
    except KeyboardInterrupt as stop:
        what = "terminated" if isinstance(stop, _Terminated) else "interrupted"
        click.echo(f"\n{what}: {plural(len(plan.manifest.done), 'file')} recorded in {manifest_path}; run the same "
                   "command again to resume", err=True)
        sys.exit(EXIT_TERMINATED if isinstance(stop, _Terminated) else EXIT_INTERRUPTED)
    if parquet:
        from .distributed import write_records_parquet
        from .folder import Manifest

        rows = write_records_parquet(sorted(Manifest(manifest_path).done.values(), key=lambda r: r["file"]), parquet)
        click.echo(f"{rows} records written to {parquet}", err=True)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items()))
    sidecars = f"; {plural(len(plan.sidecars), 'non-image file')} skipped" if plan.sidecars else ""
    click.echo(f"{plural(sum(summary.counts.values()), 'file')}: {counts or 'none'}"
               f"{f' ({summary.skipped} already done)' if summary.skipped else ''}{sidecars}; manifest: "
               f"{manifest_path}", err=True)
    if summary.changes:
        click.echo("changed since the last run: " + ", ".join(f"{n} {what}" for what, n in sorted(summary.changes.items())),
                   err=True)
    for left in summary.left[:5]:
        click.echo(f"warning: {left}", err=True)
    if len(summary.left) > 5:
        click.echo(f"warning: {len(summary.left) - 5} more outputs left in place (see above)", err=True)
    sys.exit(EXIT_FAILED if summary.unreadable else EXIT_OK)


class _Terminated(KeyboardInterrupt):
    """SIGTERM during `filter`: handled as Ctrl-C is (records flushed, resume told)."""


def _default_manifest(accepted: Path) -> Path:
    """Beside the accepted folder; in the current folder when the accepted folder is it
    (``--accepted .``) or holds it, where a user looks for it."""
    from .folder import resolved

    here, folder = Path.cwd(), resolved(accepted) or accepted.absolute()
    if folder == here or folder in here.parents:
        return here / "facegate-manifest.jsonl"
    return folder.parent / "facegate-manifest.jsonl"


def _check_writable(option: str, path: Path, *, folder: bool, create: bool) -> None:
    """A destination the run can write, told as a usage error naming the option, before
    any work: a file where a folder is wanted (or the reverse), a file in the way of its
    parents, a place that cannot be created."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise click.UsageError(f"{option} {path}: it is a {'file' if folder else 'folder'}; give a "
                               f"{'folder' if folder else 'file'} path")
    parent = path if folder else path.parent
    for above in (parent, *parent.parents):
        if above.exists():
            if not above.is_dir():
                raise click.UsageError(f"{option} {path}: {above} is a file, so nothing can be created inside it")
            break
    if create:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.UsageError(f"{option} {path}: cannot create {parent} ({exc.strerror or exc})") from None
    if not os.access(next(p for p in (parent, *parent.parents) if p.exists()), os.W_OK):
        raise click.UsageError(f"{option} {path}: no permission to write there")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--reject-rate", type=click.FloatRange(0, 1, max_open=True),
              help="Reject this fraction of the scored faces for low quality.")
@click.option("--target-fnmr", type=click.FloatRange(0, 1, max_open=True),
              help="Reject just enough that genuine comparisons fail at most this often (needs labelled "
                   "captures: PATHS is one folder with a sub-folder per identity, or use --pairs).")
@click.option("--fmr", type=click.FloatRange(0, 1, max_open=True), default=1e-3, show_default=True,
              help="False-match rate that fixes the recognizer's threshold for --target-fnmr.")
@click.option("--max-reject-rate", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="With --target-fnmr: never reject more than this fraction of captures.")
@click.option("--refit-scale", is_flag=True,
              help="Refit the score scale for --recognizer on these people (labelled as for --target-fnmr), so that a "
                   "score of s means about s%% chance of a genuine match for them at --fmr; saved in the policy. Alone, "
                   "the weights' default threshold then applies on the refit scale; with --target-fnmr or "
                   "--reject-rate the threshold is chosen on it.")
@click.option("--recognizer", help="With --target-fnmr or --refit-scale: a MobileFaceNet checkpoint, or module:factory "
                                   "for your own.")
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False),
              help="With --target-fnmr or --refit-scale: CSV of left,right,genuine comparisons instead of identity "
                   "folders.")
@click.option("--out", type=click.Path(dir_okay=False), default="facegate-policy.json", show_default=True,
              help="Policy file to write (refuses to overwrite unless --force).")
@click.option("--force", is_flag=True, help="Overwrite an existing policy file.")
@click.option("--best-effort", is_flag=True,
              help="With --target-fnmr: when the target cannot be reached, write the policy with the lowest FNMR "
                   "found instead of failing.")
@click.option("--allow-small-sample", is_flag=True,
              help="Write the policy even from too few captures to trust it (fewer than 5 below the threshold, or "
                   "fewer genuine comparisons than 3 / target FNMR).")
@gate_options()
def calibrate(paths, reject_rate, target_fnmr, fmr, max_reject_rate, refit_scale, recognizer, pairs_file, out, force,
              best_effort, allow_small_sample, **options):
    """Learn the quality threshold from your own captures: for a target reject rate, or for a
    target FNMR at a given FMR of your recognizer; and refit the score scale for your
    recognizer on your people. Writes a policy file that the API, `filter` and `stream` read."""
    from .calibration import calibrate_reject_rate, calibrate_target_fnmr

    if reject_rate is not None and target_fnmr is not None:
        raise click.UsageError("give one of --reject-rate or --target-fnmr, not both")
    if reject_rate is None and target_fnmr is None and not refit_scale:
        raise click.UsageError("give --reject-rate, --target-fnmr or --refit-scale")
    if Path(out).exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it")
    labelled = [flag for flag, given in (("--target-fnmr", target_fnmr is not None), ("--refit-scale", refit_scale))
                if given]
    for flag in labelled:
        if not recognizer:
            raise click.UsageError(f"{flag} needs --recognizer (a checkpoint, or module:factory)")
        if not pairs_file and (len(paths) != 1 or not Path(paths[0]).is_dir()):
            raise click.UsageError(f"{flag} needs one folder with a sub-folder per identity, or --pairs")
    gate = _gate(**options)
    scale = gate.spec.score_scale
    made_by = {"command": "facegate calibrate", "facegate": __version__, "score_scale": scale,
               "weights": gate.spec.name, "detector": gate.capture.detector_name, "views": list(gate.scorer.views),
               "date": time.strftime("%Y-%m-%d")}
    measurement = None
    if labelled:
        from .calibration import measure_people
        from .recognition import load_recognizer

        loaded = load_recognizer(recognizer)
        measurement = measure_people(gate, paths[0], loaded, pairs_file=pairs_file)
    policy = gate.policy
    if refit_scale:
        from .calibration import refit_scale as refit

        policy, s = refit(gate, paths[0], loaded, fmr=fmr, pairs_file=pairs_file, measurement=measurement,
                          recognizer_name=str(recognizer), allow_small_sample=allow_small_sample)
        click.echo(f"score scale refit for {policy.score_map_for}: {plural(s.comparisons, 'comparison')} with good "
                   f"references at the recognizer's threshold {s.comparison_threshold:.4f}; calibration error on people "
                   f"each fit did not see ({s.folds} folds) {s.error_before:.3f} on the weights' scale, "
                   f"{s.error_after:.3f} refit")
        made_by.update(refit_scale={"recognizer": str(recognizer), "fmr": fmr, "people": s.people,
                                    "captures": s.captures, "comparisons": s.comparisons, "folds": s.folds,
                                    "held_out_error_before": round(s.error_before, 4),
                                    "held_out_error_after": round(s.error_after, 4)})
        gate = gate.with_policy(policy)  # thresholds below are chosen on the refit scale
        scale = f"{scale}, refit"
    if target_fnmr is not None:
        policy, r = calibrate_target_fnmr(gate, paths[0], loaded, target_fnmr=target_fnmr,
                                          fmr=fmr, max_reject_rate=max_reject_rate, pairs_file=pairs_file,
                                          allow_small_sample=allow_small_sample, measurement=measurement)
        c = r.choice
        (f_lo, f_hi), (r_lo, r_hi) = r.fnmr_interval, r.reject_interval
        click.echo(f"{plural(r.captures, 'capture')} ({r.no_face} without a face), {plural(r.genuine, 'genuine comparison')} "
                   f"and {r.impostor} impostor; recognizer threshold {c.comparison_threshold:.4f} at FMR {fmr:g}")
        if r.impostor < 1 / fmr:
            click.echo(f"warning: {r.impostor} impostor comparisons set the recognizer's threshold at FMR {fmr:g} "
                       f"(fewer than 1 / FMR = {1 / fmr:.0f}): it rests on the few highest impostor scores", err=True)
        click.echo(f"threshold {r.threshold:.2f} (scale {scale}): expected FNMR {c.fnmr:.4f} (95% interval "
                   f"{f_lo:.4f}-{f_hi:.4f}, on {c.genuine_kept} genuine comparisons kept), FMR {c.fmr:.2e}, reject "
                   f"rate {c.reject_rate:.1%} ({r_lo:.1%}-{r_hi:.1%})")
        if not c.reached:
            click.echo(f"error: FNMR {target_fnmr:g} cannot be reached within reject rate {max_reject_rate:g} on "
                       f"these captures (lowest: {c.fnmr:.4f})" + ("; writing that policy (--best-effort)" if best_effort
                                                                    else "; no policy written (--best-effort writes it)"),
                       err=True)
            if not best_effort:
                sys.exit(EXIT_FAILED)
        made_by.update(target_fnmr=target_fnmr, fmr=fmr, max_reject_rate=max_reject_rate, reached=c.reached,
                       recognizer=str(recognizer), captures=r.captures, genuine=r.genuine, impostor=r.impostor,
                       expected_fnmr=c.fnmr, expected_reject_rate=c.reject_rate)
    elif reject_rate is None:
        click.echo(f"threshold {policy.min_score:.2f} (scale {scale}): the weights' default, now meaning the same "
                   "chance for your recognizer and people")
    else:
        policy, r = calibrate_reject_rate(gate, _collect(paths), reject_rate, allow_small_sample=allow_small_sample)
        low, high = r.interval
        click.echo(f"threshold {r.threshold:.2f} (scale {scale}): rejects {r.low_quality}/{r.scored} scored faces "
                   f"for low quality ({r.low_quality / r.scored:.1%}; 95% interval for captures like these "
                   f"{low:.1%}-{high:.1%}); with every other reason {r.rejected}/{r.captures} captures "
                   f"({r.rejected / max(r.captures, 1):.1%})")
        if r.low_quality < 20:
            click.echo(f"warning: the threshold rests on {plural(r.low_quality, 'face')} below it; the share it "
                       f"rejects of new captures may be anywhere in {low:.0%}-{high:.0%}", err=True)
        made_by.update(reject_rate=reject_rate, captures=r.captures, scored=r.scored)
    policy.with_changes(score_scale=gate.spec.score_scale).save(out, made_by=made_by)
    click.echo(f"policy written to {out}")


@main.command()
@click.argument("source", type=click.Path(exists=True))
@click.option("--recognizer", required=True, help="A MobileFaceNet checkpoint, or module:factory for your own model.")
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False),
              help="CSV of left,right,genuine comparisons (default: every pair within each identity folder of SOURCE).")
@click.option("--fmr", type=click.FloatRange(0, 1, max_open=True), default=1e-3, show_default=True,
              help="Fix the comparison threshold at this FMR over all impostor comparisons.")
@click.option("--fnmr", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Fix it at this starting FNMR instead.")
@click.option("--discard-limit", type=click.FloatRange(0, 1, min_open=True), default=0.2, show_default=True,
              help="The pAUC covers discarding up to this fraction of genuine comparisons.")
@click.option("--observer", "observer_path", type=click.Path(exists=True, dir_okay=False),
              help="Also evaluate the FROQ observer with this calibration (for a MobileFaceNet recognizer).")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the full report (with curves) as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the EDC plot (PNG; needs matplotlib).")
@click.option("--weights", type=click.Path(exists=True, file_okay=False), help="Weights folder (default: shipped weights).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Threads for the whole process [default: every available core].")
def evaluate(source, recognizer, pairs_file, fmr, fnmr, discard_limit, observer_path, report, plot, weights, threads):
    """Error-versus-discard evaluation: does discarding low scores cut false non-matches?
    Compares facegate (members, ensemble, views), baselines and random order."""
    from .evaluation import edc_report, labelled_captures, measure_captures, plot_edc, write_report
    from .recognition import load_recognizer
    from .runtime import configure_threads

    if plot and "matplotlib" in missing("eval"):  # before minutes of measuring, not after
        raise MissingExtraError("--plot", "eval", "matplotlib")
    if observer_path:
        require("torch", "--observer")
    configure_threads(threads)
    model = load_recognizer(recognizer)
    images, identities, genuine_pairs = labelled_captures(source, pairs_file)
    observer = None
    if observer_path:
        from .observer import ObserverScorer

        observer = ObserverScorer(model, observer_path)
    if not len(genuine_pairs):
        raise click.UsageError("no genuine comparisons: each identity needs at least two captures")
    measured = measure_captures(images, identities, recognizer=model, weights=weights, observer=observer)
    result = edc_report(measured, genuine_pairs, fmr=None if fnmr else fmr, fnmr=fnmr, limit=discard_limit)
    from .evaluation import wilson_interval

    genuine_n, impostor_n = result["genuine_comparisons"], result["impostor_comparisons"]
    low, high = wilson_interval(int(round(result["start_fnmr"] * genuine_n)), genuine_n)
    click.echo(f"{plural(result['captures'], 'capture')} ({result['no_face']} without a face), "
               f"{plural(genuine_n, 'genuine comparison')} and {impostor_n} impostor; threshold {result['threshold']:.4f} "
               f"({result['threshold_rule']}), starting FNMR {result['start_fnmr']:.4f} (95% interval "
               f"{low:.4f}-{high:.4f})")
    if genuine_n < 100:
        click.echo(f"warning: {plural(genuine_n, 'genuine comparison')}: an FNMR moves by 1/{genuine_n} = "
                   f"{1 / genuine_n:.3f} per comparison, so differences between methods below the interval above are "
                   "noise; use a few hundred comparisons or more", err=True)
    if not fnmr and impostor_n < 1 / fmr:
        click.echo(f"warning: {impostor_n} impostor comparisons set the threshold at FMR {fmr:g} (fewer than "
                   f"1 / FMR = {1 / fmr:.0f}): it rests on the few highest impostor scores", err=True)
    width = max([len("method"), *(len(row["method"]) for row in result["rows"])])
    click.echo(f"{'method':{width}s} {'pAUC':>9s} {'vs random':>9s} {'FNMR@5%':>8s} {'@10%':>8s} {'@20%':>8s}")
    for row in result["rows"]:
        relative = "-" if row["relative_to_random"] is None else f"{row['relative_to_random']:.2f}"
        click.echo(f"{row['method']:{width}s} {row['pauc']:9.5f} {relative:>9s} "
                   f"{row['fnmr_at_5%']:8.4f} {row['fnmr_at_10%']:8.4f} {row['fnmr_at_20%']:8.4f}")
    if report:
        write_report(result, report)
    if plot:
        try:
            plot_edc(result, plot, title=f"EDC: {source}")
        except ImportError as exc:
            raise click.UsageError(str(exc)) from None


def _display_problem() -> str | None:
    """Why no window can be shown here, or None. On Linux a display must answer, not only
    be named: with DISPLAY set and no X server, OpenCV's Qt aborts the whole process."""
    if not sys.platform.startswith("linux"):
        return None
    import socket

    def answers(family, address) -> bool:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(address)
            return True
        except OSError:
            return False

    wayland = os.environ.get("WAYLAND_DISPLAY")
    if wayland:
        path = wayland if wayland.startswith("/") else os.path.join(os.environ.get("XDG_RUNTIME_DIR", ""), wayland)
        if answers(socket.AF_UNIX, path):
            return None
    display = os.environ.get("DISPLAY")
    if not display:
        return "DISPLAY is not set" if not wayland else f"no Wayland compositor answers at {wayland}"
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return f"DISPLAY={display} is not a display name"
    if host in ("", "unix") or host.startswith("/"):
        local = f"/tmp/.X11-unix/X{number}"
        if answers(socket.AF_UNIX, local) or answers(socket.AF_UNIX, "\0" + local):
            return None
    elif answers(socket.AF_INET, (host, 6000 + int(number))):
        return None
    return f"no X server answers at DISPLAY={display}"


@main.command()
@click.option("--source", required=True, help="Webcam index (0), video file, RTSP/HTTP URL, or folder/glob of frames.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="facegate-stream", show_default=True,
              help="Folder for accepted best shots (image + JSON sidecar); one that holds an earlier run is "
                   "added to (this run's visits numbered after its visits, nothing overwritten).")
@click.option("--events", type=click.Path(dir_okay=False), default=None,
              help="JSON-lines event log [default: events.jsonl in --out].")
@click.option("--show", is_flag=True, help="Show an annotated preview window (needs a display).")
@click.option("--max-frames", type=click.IntRange(1), default=None, help="Stop after this many frames.")
@click.option("--duration", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop after this many seconds of wall-clock time.")
@click.option("--accept-frames", type=click.IntRange(1), default=3, show_default=True,
              help="Consecutive good frames before a person is accepted.")
@click.option("--best-window", type=click.IntRange(0), default=None,
              help="Take the best shot within this many frames after acceptance and decide then (lower latency) "
                   "[default: the best frame of the whole visit, decided when the person leaves].")
@click.option("--max-gap", type=click.FloatRange(0), default=0.5, show_default=True,
              help="A visit ends when its person is not seen for this many seconds of video.")
@click.option("--detect-every", type=click.IntRange(1), default=1, show_default=True,
              help="Run the detector every k-th frame, holding faces in between.")
@click.option("--retries", type=click.IntRange(0), default=3, show_default=True,
              help="Reconnection attempts when a network stream drops.")
@gate_options(views="none", detector="yunet", batch=False)
def stream(source, out_dir, events, show, max_frames, duration, accept_frames, best_window, max_gap, detect_every,
           retries, **options):
    """Gate a live camera, video file or stream: one decision per person, best shot kept.

    Headless by default; Ctrl-C stops cleanly and flushes everything. Exit code 1 when
    the source cannot be opened or drops for good (results so far are kept). Defaults
    differ from stills for frame rate: YuNet and no test-time views (docs/performance.md).
    """
    from .errors import SourceError
    from .sources import open_source
    from .stream import StreamGate, annotate

    problem = _display_problem() if show else None
    if problem:
        raise click.UsageError(f"--show needs a display ({problem}); run without --show for a headless run")
    gate = _gate(**options, batch_size=1)
    click.echo(f"scoring with {'onnxruntime' if gate.scorer.backend == 'onnx' else 'PyTorch'}", err=True)
    events = events or str(Path(out_dir) / "events.jsonl")
    streamer = StreamGate(gate, accept_frames=accept_frames, best_window=best_window, max_gap=max_gap,
                          detect_every=detect_every,
                          out_dir=out_dir, events=events, on_event=_print_event)
    code = EXIT_OK
    results = None
    try:
        with open_source(source, retries=retries) as frames:
            if streamer.first_track > 1:  # said once the source opened: a wrong path adds nothing
                click.echo(f"{events} and {out_dir} hold earlier runs: appending, this run's visits numbered "
                           f"from {streamer.first_track} (run {streamer.outputs.run})", err=True)
            results = streamer.run(frames, max_frames=max_frames, duration=duration)
            for result in results:
                if show:
                    import cv2

                    cv2.imshow("facegate", annotate(result.frame, result))
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        break
    except SourceError as exc:
        click.echo(f"error: {exc}", err=True)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        click.echo("interrupted: deciding the visits still open", err=True)
        code = EXIT_INTERRUPTED
    finally:
        if results is not None:
            results.close()  # finishes open tracks: their decisions are emitted and counted
        if show:
            import cv2

            cv2.destroyAllWindows()
    c = streamer.counts
    written = f"events in {events}" if streamer.visits_decided else "no events written"
    click.echo(f"{plural(c['frames'], 'frame')} ({c['dropped']} dropped): {plural(streamer.visits_decided, 'visit')} "
               f"decided, {c['accepted']} accepted, {c['rejected']} rejected; {written}", err=True)
    sys.exit(code)


def _print_event(event) -> None:
    if event.event == "accepted":
        click.echo(f"accepted  visit {event.track}: best frame {event.frame} score {event.score:.1f} -> {event.image}")
    else:
        click.echo(f"rejected  visit {event.track} ({plural(event.frames, 'frame')}): {event.prompt}")


@main.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default="facegate-review.html", show_default=True,
              help="HTML file to write (replaces only an earlier review page).")
@click.option("--page-size", type=click.IntRange(1), default=60, show_default=True,
              help="Thumbnails per page of each grid.")
@click.option("--best", "best_per_person", type=click.IntRange(1), default=3, show_default=True,
              help="Captures shown per person (one sub-folder per person).")
def report(manifest, out, page_size, best_per_person):
    """Write a review page of a `facegate filter` run: one self-contained HTML file that
    opens offline (counts, score histogram with a threshold slider, rejections by reason
    with thumbnails, best captures per person)."""
    from .review import write_review

    summary = write_review(manifest, out, page_size=page_size, best_per_person=best_per_person)
    missing = (f", {plural(summary['missing_originals'], 'original')} missing or unreadable"
               if summary["missing_originals"] else "")
    click.echo(f"{plural(summary['captures'], 'capture')}{missing}; review page: {out}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; 0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--profile", type=click.Choice(list(PROFILE_NAMES)), default=None,
              help="Default policy of /v1/assess (a request may name another with ?profile=).")
@click.option("--policy", type=click.Path(exists=True, dir_okay=False), help="Policy file (from `facegate calibrate`).")
@click.option("--weights", type=click.Path(exists=True, file_okay=False), help="Weights folder (default: shipped weights).")
@click.option("--views", type=click.Choice(["none", "flip", "full"]), default="full", show_default=True,
              help="Test-time views.")
@click.option("--detector", type=click.Choice(["mtcnn", "yunet"]), default="mtcnn", show_default=True,
              help="Face detector of /v1/assess (the live page uses YuNet, as `facegate stream`).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Worker processes, each with its own models.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Threads per worker [default: every available core, divided between workers].")
@click.option("--token", envvar="FACEGATE_TOKEN", default=None,
              help="Bearer token every route but /v1/health requires (or set FACEGATE_TOKEN).")
@click.option("--max-body-mb", type=click.FloatRange(0, min_open=True), default=20.0, show_default=True,
              help="Largest request body, in MiB (413 above it).")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Largest image, width x height (413 above it) [default: the decoder's limit].")
@click.option("--request-timeout", type=click.FloatRange(0, min_open=True), default=30.0, show_default=True,
              help="Seconds a request may wait and be assessed before it gets 504.")
@click.option("--max-batch", type=click.IntRange(1), default=8, show_default=True,
              help="Concurrent requests assessed together at most.")
def serve(host, port, profile, policy, weights, views, detector, workers, threads, token, max_body_mb, max_pixels,
          request_timeout, max_batch):
    """Serve the gate over HTTP (POST /v1/assess, GET /v1/health) and the live capture page (GET /)."""
    require("serve", "facegate serve")
    from .images import MAX_PIXELS
    from .scorer import weights_info
    from .service import ServiceSettings, run

    Policy.choose(policy, profile)  # a bad policy file or weights folder is told now, not by a 503 later
    weights_info(weights)
    settings = ServiceSettings(policy=policy, profile=profile, weights=weights, views=views, detector=detector,
                               threads=threads, token=token or None, max_body_bytes=int(max_body_mb * 1024 * 1024),
                               max_pixels=max_pixels or MAX_PIXELS, request_timeout_s=request_timeout,
                               max_batch=max_batch)
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        click.echo(f"warning: listening on {host} without a token: anyone who reaches this port can use the "
                   "service (--token or FACEGATE_TOKEN)", err=True)
    try:
        run(settings, host=host, port=port, workers=workers)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


@main.command()
@click.option("--weights", type=click.Path(exists=True, file_okay=False), help="Weights folder (default: shipped weights).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Lines for people, or JSON (facegate.weights_info()) for programs.")
def info(weights, fmt):
    """Which weights are loaded, their score scale and their terms of use (and the code's)."""
    from .scorer import weights_info

    about = weights_info(weights)
    if fmt == "json":
        click.echo(json.dumps(about, indent=1))
        return
    w = about["weights"]
    lines = [
        f"facegate {about['facegate']} (code: {about['code_license']} licence)",
        f"weights: {w['name']}" + (" (shipped)" if w["shipped"] else "") + f" in {w['folder']}",
        f"  terms: {w['terms']}",
        f"  score scale {w['score_scale']}, default threshold {'none (not calibrated)' if w['default_threshold'] is None else format(w['default_threshold'], 'g')}, views {','.join(w['views'])}, "
        f"{w['input_size']} px crops",
        *(f"  {arch} sha256 {digest[:12]}" for arch, digest in w["members"].items()),
        *([f"  model card: {w['model_card']}"] if w["model_card"] else []),
        *(f"detector {name}: {terms}" for name, terms in about["detectors"].items()),
        *(f"helper {name}: {terms}" for name, terms in about["helpers"].items()),
        "extras: " + ", ".join(f"{name} {'installed' if ok else 'not installed'}" for name, ok in about["extras"].items()),
    ]
    click.echo("\n".join(lines))


@main.command()
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="Export format.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="File to write (never overwritten).")
@click.option("--weights", type=click.Path(exists=True, file_okay=False), help="Weights folder (default: shipped weights).")
@click.option("--views", type=click.Choice(["none", "flip", "full"]), default="full", show_default=True,
              help="Test-time views folded into the graph.")
def export(fmt, out, weights, views):
    """Export the scorer (preprocessing, members and views) for other runtimes.

    The ONNX graph takes `crops` (B, S, S, 3) uint8 RGB aligned faces and returns
    `utility` (0-1) and `score` (0-100).
    """
    require("onnx", "facegate export")
    from .export import export_onnx
    from .scorer import create_scorer

    if Path(out).exists():
        raise click.UsageError(f"{out} exists; choose another file")
    scorer = create_scorer(weights, backend="torch", views=views)
    path = export_onnx(scorer, out)
    click.echo(f"wrote {path} (input {scorer.spec.input_size}x{scorer.spec.input_size}, views {','.join(scorer.views)})",
               err=True)


if __name__ == "__main__":
    main()
