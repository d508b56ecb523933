"""The ``facegate`` command.

Exit codes: 0 every input processed; 1 some inputs unreadable; 2 usage error (click's own).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import click
import cv2

from . import __version__
from .errors import FacegateError
from .folder import find_images, plan_filter, run_filter, threshold_for_reject_rate
from .gate import CaptureResult, Gate
from .policy import Policy, Status

EXIT_OK, EXIT_UNREADABLE = 0, 1


def _gate(policy, threshold, weights, views, threads, batch_size, detector="mtcnn", onnx=None) -> Gate:
    try:
        pol = Policy.load(policy) if policy else Policy()
        if threshold is not None:
            pol = replace(pol, min_score=threshold)
        return Gate(policy=pol, weights=weights, views=views, threads=threads, batch_size=batch_size,
                    detector=detector, onnx=onnx)
    except FacegateError as exc:
        raise click.UsageError(str(exc)) from None


def gate_options(fn):
    options = [
        click.option("--policy", type=click.Path(exists=True, dir_okay=False), help="Policy file (from `facegate calibrate`)."),
        click.option("--threshold", type=click.FloatRange(0, 100), help="Accept at or above this score (overrides the policy)."),
        click.option("--weights", type=click.Path(exists=True, file_okay=False), help="Weights folder (default: shipped weights)."),
        click.option("--views", type=click.Choice(["none", "flip", "full"]), default="full", show_default=True, help="Test-time views."),
        click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for torch."),
        click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True),
        click.option("--detector", type=click.Choice(["mtcnn", "yunet"]), default="mtcnn", show_default=True,
                     help="Face detector: MTCNN, or the faster YuNet."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group()
@click.version_option(__version__, prog_name="facegate")
def main():
    """Gate face captures: accept or reject each with a reason before recognition."""
    # File names that are not valid UTF-8 must print, not crash the run.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _collect(paths: tuple[str, ...]) -> list[Path]:
    files = []
    for p in paths:
        path = Path(p)
        files.extend(find_images(path) if path.is_dir() else [path])
    return files


TABLE_COLUMNS = ("status", "score", "reasons", "faces", "source")


def _row(result: CaptureResult) -> dict:
    return {
        "status": result.status.value,
        "score": "" if result.score is None else f"{result.score:.1f}",
        "reasons": ",".join(result.reasons) or (result.error or ""),
        "faces": str(len(result.faces)),
        "source": result.source,
    }


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table", show_default=True)
@click.option("--aligned", is_flag=True, help="Inputs are aligned face crops: score them without detection.")
@gate_options
def score(paths, fmt, aligned, policy, threshold, weights, views, threads, batch_size, detector):
    """Score captures: one line per image (files or folders, searched recursively)."""
    gate = _gate(policy, threshold, weights, views, threads, batch_size, detector)
    files = _collect(paths)
    if not files:
        raise click.UsageError("no image files found in the given paths")
    if aligned:
        _score_aligned(gate, files, fmt)
        return
    out = sys.stdout
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=["source", "status", "reasons", "score", "faces", "box", "error"])
        writer.writeheader()
    elif fmt == "table":
        out.write(f"{'status':<11} {'score':>6}  {'reasons':<28} {'faces':>5}  source\n")
    unreadable = 0
    for result in gate.assess_many(files):
        unreadable += result.status is Status.UNREADABLE
        if fmt == "jsonl":
            out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        elif fmt == "csv":
            d = result.to_dict()
            writer.writerow({"source": d["source"], "status": d["status"], "reasons": ";".join(d["reasons"]),
                             "score": "" if d["score"] is None else d["score"], "faces": d["faces"],
                             "box": "" if d["face"] is None else " ".join(map(str, d["face"]["box"])),
                             "error": d["error"] or ""})
        else:
            r = _row(result)
            out.write(f"{r['status']:<11} {r['score']:>6}  {r['reasons']:<28} {r['faces']:>5}  {r['source']}\n")
        out.flush()
    sys.exit(EXIT_UNREADABLE if unreadable else EXIT_OK)


def _score_aligned(gate: Gate, files: list[Path], fmt: str) -> None:
    from .errors import ImageError

    out = sys.stdout
    unreadable = 0
    if fmt == "csv":
        out.write("source,score,error\n")
    for path in files:
        try:
            value, error = float(gate.score_crops([path])[0]), None
        except ImageError as exc:
            value, error = None, exc.cause
            unreadable += 1
        if fmt == "jsonl":
            out.write(json.dumps({"source": str(path), "score": None if value is None else round(value, 2), "error": error}) + "\n")
        elif fmt == "csv":
            buf = io.StringIO()
            csv.writer(buf).writerow([path, "" if value is None else f"{value:.2f}", error or ""])
            out.write(buf.getvalue())
        else:
            out.write(f"{'unreadable' if value is None else f'{value:6.1f}'}  {error or ''}  {path}\n")
    sys.exit(EXIT_UNREADABLE if unreadable else EXIT_OK)


@main.command("filter")
@click.argument("src", type=click.Path(exists=True))
@click.option("--accepted", required=True, type=click.Path(file_okay=False), help="Folder for accepted captures.")
@click.option("--rejected", required=True, type=click.Path(file_okay=False), help="Folder for everything else.")
@click.option("--manifest", type=click.Path(dir_okay=False), default=None,
              help="JSON-lines manifest [default: facegate-manifest.jsonl beside the accepted folder].")
@click.option("--link", is_flag=True, help="Make symbolic links to the originals instead of copies.")
@gate_options
def filter_cmd(src, accepted, rejected, manifest, link, policy, threshold, weights, views, threads, batch_size,
               detector):
    """Sort an enrollment folder into accepted and rejected copies.

    Originals are never moved or changed; sub-folders are mirrored; an interrupted run
    resumes where it stopped when run again with the same arguments.
    """
    accepted, rejected = Path(accepted), Path(rejected)
    src_path = Path(src).resolve()
    for dest in (accepted, rejected):
        if dest.resolve() == src_path:
            raise click.UsageError(f"{dest} is the source folder; choose another destination")
    manifest_path = Path(manifest) if manifest else accepted.resolve().parent / "facegate-manifest.jsonl"
    gate = _gate(policy, threshold, weights, views, threads, batch_size, detector)
    plan = plan_filter(Path(src), accepted, rejected, manifest_path)
    err = sys.stderr
    show = err.isatty()
    with click.progressbar(length=len(plan.todo), label="filtering", file=err, show_pos=True) if show else _NullBar() as bar:
        summary = run_filter(gate, plan, link=link, on_result=lambda _r: bar.update(1))
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items()))
    click.echo(f"{sum(summary.counts.values())} files: {counts or 'none'}"
               f"{f' ({summary.skipped} already done)' if summary.skipped else ''}; manifest: {manifest_path}", err=True)
    sys.exit(EXIT_UNREADABLE if summary.unreadable else EXIT_OK)


class _NullBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--reject-rate", required=True, type=click.FloatRange(0, 1, max_open=True),
              help="Fraction of the scored faces to reject for low quality.")
@click.option("--out", type=click.Path(dir_okay=False), default="facegate-policy.json", show_default=True,
              help="Policy file to write (refuses to overwrite unless --force).")
@click.option("--force", is_flag=True, help="Overwrite an existing policy file.")
@gate_options
def calibrate(paths, reject_rate, out, force, policy, threshold, weights, views, threads, batch_size, detector):
    """Pick the quality threshold that rejects a target fraction of your own captures."""
    if Path(out).exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it")
    gate = _gate(policy, threshold, weights, views, threads, batch_size, detector)
    results = list(gate.assess_many(_collect(paths)))
    scores = [r.score for r in results if r.score is not None]
    if not scores:
        raise click.UsageError("no faces found to calibrate on")
    chosen = threshold_for_reject_rate(scores, reject_rate)
    new_policy = replace(gate.policy, min_score=chosen)
    new_policy.save(out)
    from .policy import decide

    rejected = sum(decide(new_policy, r.faces, r.face, r.score)[0] is not Status.ACCEPTED
                   for r in results if r.status is not Status.UNREADABLE)
    low = sum(s < chosen for s in scores)
    click.echo(f"threshold {chosen:.2f} (scale {gate.spec.score_scale}): rejects {low}/{len(scores)} "
               f"scored faces for low quality ({low / len(scores):.1%}); with every other reason "
               f"{rejected}/{len(results)} captures ({rejected / len(results):.1%}); policy written to {out}")


@main.command()
@click.option("--source", required=True, help="Webcam index (0), video file, RTSP/HTTP URL, or folder/glob of frames.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="facegate-stream", show_default=True,
              help="Folder for accepted best shots (image + JSON sidecar).")
@click.option("--events", type=click.Path(dir_okay=False), default=None,
              help="JSON-lines event log [default: events.jsonl in --out].")
@click.option("--show", is_flag=True, help="Show an annotated preview window (needs a display).")
@click.option("--max-frames", type=click.IntRange(1), default=None)
@click.option("--duration", type=click.FloatRange(0, min_open=True), default=None, help="Stop after this many seconds.")
@click.option("--accept-frames", type=click.IntRange(1), default=3, show_default=True,
              help="Consecutive good frames before a person is accepted.")
@click.option("--detect-every", type=click.IntRange(1), default=1, show_default=True,
              help="Run the detector every k-th frame, holding faces in between.")
@click.option("--retries", type=click.IntRange(0), default=3, show_default=True,
              help="Reconnection attempts when a network stream drops.")
@click.option("--policy", type=click.Path(exists=True, dir_okay=False), help="Policy file (from `facegate calibrate`).")
@click.option("--threshold", type=click.FloatRange(0, 100), help="Accept at or above this score.")
@click.option("--weights", type=click.Path(exists=True, file_okay=False))
@click.option("--views", type=click.Choice(["none", "flip", "full"]), default="none", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None)
@click.option("--detector", type=click.Choice(["mtcnn", "yunet"]), default="yunet", show_default=True)
@click.option("--onnx", "onnx_path", type=click.Path(exists=True, dir_okay=False),
              help="Score through this graph from `facegate export` (onnxruntime; fastest).")
def stream(source, out_dir, events, show, max_frames, duration, accept_frames, detect_every, retries, policy,
           threshold, weights, views, threads, detector, onnx_path):
    """Gate a live camera, video file or stream: one decision per person, best shot kept.

    Headless by default; Ctrl-C stops cleanly and flushes everything. Exit code 1 when
    the source cannot be opened or drops for good (results so far are kept).
    """
    from .errors import SourceError
    from .sources import open_source
    from .stream import StreamGate

    gate = _gate(policy, threshold, weights, views, threads, 1, detector, onnx_path)
    events = events or str(Path(out_dir) / "events.jsonl")
    streamer = StreamGate(gate, accept_frames=accept_frames, detect_every=detect_every, out_dir=out_dir,
                          events=events)
    counts = {"frames": 0, "dropped": 0, "accepted": 0, "rejected": 0}
    code = EXIT_OK
    try:
        with open_source(source, retries=retries) as frames:
            for frame in frames:
                if max_frames is not None and counts["frames"] >= max_frames:
                    break
                if duration is not None and frame.time > duration:
                    break
                result = streamer.process(frame)
                counts["frames"] += 1
                counts["dropped"] += result.dropped
                for event in result.events:
                    counts[event["event"]] += 1
                    _print_event(event)
                if show:
                    cv2.imshow("facegate", streamer.annotate(frame, result))
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        break
    except SourceError as exc:
        click.echo(f"error: {exc}", err=True)
        code = EXIT_UNREADABLE
    except KeyboardInterrupt:
        click.echo("interrupted: finishing open tracks", err=True)
    finally:
        for event in streamer.finish():
            counts[event["event"]] += 1
            _print_event(event)
        if show:
            cv2.destroyAllWindows()
    click.echo(f"{counts['frames']} frames ({counts['dropped']} dropped): {counts['accepted']} accepted, "
               f"{counts['rejected']} rejected; events in {events}", err=True)
    sys.exit(code)


def _print_event(event: dict) -> None:
    if event["event"] == "accepted":
        click.echo(f"accepted  track {event['track']} at frame {event['frame']} score {event['score']:.1f} -> {event['image']}")
    else:
        click.echo(f"rejected  track {event['track']} ({event['frames']} frames): {event['prompt']}")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="File to write (never overwritten).")
@click.option("--weights", type=click.Path(exists=True, file_okay=False), help="Weights folder (default: shipped weights).")
@click.option("--views", type=click.Choice(["none", "flip", "full"]), default="full", show_default=True,
              help="Test-time views folded into the graph.")
def export(fmt, out, weights, views):
    """Export the scorer (preprocessing, members and views) for other runtimes.

    The ONNX graph takes `crops` (B, S, S, 3) uint8 RGB aligned faces and returns
    `utility` (0-1) and `score` (0-100).
    """
    from .export import export_onnx
    from .scorer import Scorer

    if Path(out).exists():
        raise click.UsageError(f"{out} exists; choose another file")
    try:
        scorer = Scorer(weights, views=views)
        path = export_onnx(scorer, out)
    except FacegateError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"wrote {path} (input {scorer.spec.input_size}x{scorer.spec.input_size}, views {','.join(scorer.views)})",
               err=True)


if __name__ == "__main__":
    main()
