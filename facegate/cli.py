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
import numpy as np

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
@click.option("--reject-rate", type=click.FloatRange(0, 1, max_open=True),
              help="Reject this fraction of the scored faces for low quality.")
@click.option("--target-fnmr", type=click.FloatRange(0, 1, max_open=True),
              help="Reject just enough that genuine comparisons fail at most this often (needs labelled "
                   "captures: PATHS is one folder with a sub-folder per identity, or use --pairs).")
@click.option("--fmr", type=click.FloatRange(0, 1, max_open=True), default=1e-3, show_default=True,
              help="False-match rate that fixes the recognizer's threshold for --target-fnmr.")
@click.option("--max-reject-rate", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="With --target-fnmr: never reject more than this fraction of captures.")
@click.option("--recognizer", help="With --target-fnmr: a MobileFaceNet checkpoint, or module:factory for your own.")
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False),
              help="With --target-fnmr: CSV of left,right,genuine comparisons instead of identity folders.")
@click.option("--out", type=click.Path(dir_okay=False), default="facegate-policy.json", show_default=True,
              help="Policy file to write (refuses to overwrite unless --force).")
@click.option("--force", is_flag=True, help="Overwrite an existing policy file.")
@gate_options
def calibrate(paths, reject_rate, target_fnmr, fmr, max_reject_rate, recognizer, pairs_file, out, force, policy,
              threshold, weights, views, threads, batch_size, detector):
    """Learn the quality threshold from your own captures: for a target reject rate, or for a
    target FNMR at a given FMR of your recognizer. Writes a policy file that the API,
    `filter` and `stream` read."""
    if (reject_rate is None) == (target_fnmr is None):
        raise click.UsageError("give exactly one of --reject-rate or --target-fnmr")
    if Path(out).exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it")
    gate = _gate(policy, threshold, weights, views, threads, batch_size, detector)
    if target_fnmr is not None:
        chosen = _calibrate_fnmr(gate, paths, pairs_file, recognizer, weights, views, target_fnmr, fmr, max_reject_rate)
        new_policy = replace(gate.policy, min_score=chosen)
        new_policy.save(out)
        click.echo(f"policy written to {out}")
        return
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


def _calibrate_fnmr(gate, paths, pairs_file, recognizer_spec, weights, views, target_fnmr, fmr, max_reject_rate) -> float:
    from .evaluation import calibrate_for_fnmr, impostor_comparisons, labelled_captures, measure_captures, pair_scores
    from .recognition import load_recognizer

    if not recognizer_spec:
        raise click.UsageError("--target-fnmr needs --recognizer (a checkpoint, or module:factory)")
    if not pairs_file and (len(paths) != 1 or not Path(paths[0]).is_dir()):
        raise click.UsageError("--target-fnmr needs one folder with a sub-folder per identity, or --pairs")
    try:
        recognizer = load_recognizer(recognizer_spec)
        images, identities, genuine_pairs = labelled_captures(paths[0], pairs_file)
    except FacegateError as exc:
        raise click.UsageError(str(exc)) from None
    if not len(genuine_pairs):
        raise click.UsageError("no genuine comparisons: each identity needs at least two captures")
    measured = measure_captures(images, identities, recognizer=recognizer, weights=weights, detector=gate.detector,
                                views=(views,), baselines=False)
    quality = measured.quality[f"ensemble ({views})"]
    genuine = pair_scores(measured.embeddings, genuine_pairs)
    impostor_pairs, impostor = impostor_comparisons(measured)
    if not len(impostor):
        raise click.UsageError("no impostor comparisons: captures of at least two identities are needed")
    choice = calibrate_for_fnmr(quality, genuine_pairs, genuine, impostor_pairs, impostor,
                                target_fnmr=target_fnmr, fmr=fmr, max_reject_rate=max_reject_rate)
    chosen = float(np.clip(choice.quality_threshold, 0.0, 100.0))
    click.echo(f"{len(images)} captures ({int((~measured.found).sum())} without a face), {len(genuine)} genuine and "
               f"{len(impostor)} impostor comparisons; recognizer threshold {choice.comparison_threshold:.4f} "
               f"at FMR {fmr:g}")
    if not choice.reached:
        click.echo(f"warning: FNMR {target_fnmr:g} is not reachable within reject rate {max_reject_rate:g}; "
                   "taking the lowest FNMR found", err=True)
    click.echo(f"threshold {chosen:.2f} (scale {gate.spec.score_scale}): expected FNMR {choice.fnmr:.4f} "
               f"(on {choice.genuine_kept} genuine comparisons kept), FMR {choice.fmr:.2e}, "
               f"reject rate {choice.reject_rate:.1%}")
    return chosen


@main.command()
@click.argument("source", type=click.Path(exists=True))
@click.option("--recognizer", required=True, help="A MobileFaceNet checkpoint, or module:factory for your own model.")
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, dir_okay=False),
              help="CSV of left,right,genuine comparisons (default: every pair within each identity folder of SOURCE).")
@click.option("--fmr", type=click.FloatRange(0, 1, max_open=True), default=1e-3, show_default=True,
              help="Fix the comparison threshold at this FMR over all impostor comparisons.")
@click.option("--fnmr", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Fix it at this starting FNMR instead.")
@click.option("--discard-limit", type=click.FloatRange(0, 1, min_open=True), default=0.2, show_default=True)
@click.option("--observer", "observer_path", type=click.Path(exists=True, dir_okay=False),
              help="Also evaluate the FROQ observer with this calibration (for a MobileFaceNet recognizer).")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the full report (with curves) as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the EDC plot (PNG; needs matplotlib).")
@click.option("--weights", type=click.Path(exists=True, file_okay=False), help="Weights folder (default: shipped weights).")
@click.option("--threads", type=click.IntRange(1), default=None)
def evaluate(source, recognizer, pairs_file, fmr, fnmr, discard_limit, observer_path, report, plot, weights, threads):
    """Error-versus-discard evaluation: does discarding low scores cut false non-matches?
    Compares facegate (members, ensemble, views), baselines and random order."""
    import torch

    from .evaluation import edc_report, labelled_captures, measure_captures, plot_edc
    from .recognition import load_recognizer

    if threads:
        torch.set_num_threads(threads)
    try:
        model = load_recognizer(recognizer)
        images, identities, genuine_pairs = labelled_captures(source, pairs_file)
        observer = None
        if observer_path:
            from .observer import ObserverCalibration, ObserverScorer

            observer = ObserverScorer(model, ObserverCalibration.load(observer_path))
    except FacegateError as exc:
        raise click.UsageError(str(exc)) from None
    if not len(genuine_pairs):
        raise click.UsageError("no genuine comparisons: each identity needs at least two captures")
    measured = measure_captures(images, identities, recognizer=model, weights=weights, observer=observer)
    result = edc_report(measured, genuine_pairs, fmr=None if fnmr else fmr, fnmr=fnmr, limit=discard_limit)
    click.echo(f"{result['captures']} captures ({result['no_face']} without a face), {result['genuine_comparisons']} "
               f"genuine and {result['impostor_comparisons']} impostor comparisons; threshold {result['threshold']:.4f} "
               f"({result['threshold_rule']}), starting FNMR {result['start_fnmr']:.4f}")
    click.echo(f"{'method':32s} {'pAUC':>9s} {'vs random':>9s} {'FNMR@5%':>8s} {'@10%':>8s} {'@20%':>8s}")
    for row in result["rows"]:
        click.echo(f"{row['method']:32s} {row['pauc']:9.5f} {row['relative_to_random']:9.2f} {row['fnmr_at_5%']:8.4f} "
                   f"{row['fnmr_at_10%']:8.4f} {row['fnmr_at_20%']:8.4f}")
    if report:
        data = {**{k: v for k, v in result.items() if k != "curves"},
                "curves": {m: c.to_dict(discard_limit) for m, c in result["curves"].items()}}
        Path(report).write_text(json.dumps(data, indent=1) + "\n")
    if plot:
        try:
            plot_edc(result, plot, title=f"EDC: {source}")
        except ImportError as exc:
            raise click.UsageError(str(exc)) from None


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
              help="Score through this graph from `facegate export` (onnxruntime). Default: the graph shipped "
                   "with the weights for --views none, when scoring the shipped weights.")
@click.option("--pytorch", "force_pytorch", is_flag=True, help="Score with PyTorch even when a graph is available.")
def stream(source, out_dir, events, show, max_frames, duration, accept_frames, detect_every, retries, policy,
           threshold, weights, views, threads, detector, onnx_path, force_pytorch):
    """Gate a live camera, video file or stream: one decision per person, best shot kept.

    Headless by default; Ctrl-C stops cleanly and flushes everything. Exit code 1 when
    the source cannot be opened or drops for good (results so far are kept).
    """
    from .errors import SourceError
    from .sources import open_source
    from .stream import StreamGate

    explicit_graph = onnx_path is not None
    if onnx_path is None and not force_pytorch and weights is None:
        from .export import shipped_graph

        # onnxruntime costs ~3 ms per face at batch 1 where PyTorch costs ~19 (docs/performance.md)
        onnx_path = shipped_graph(views)
    try:
        gate = _gate(policy, threshold, weights, views, threads, 1, detector, onnx_path)
    except click.UsageError as exc:
        if onnx_path is None or explicit_graph:
            raise
        click.echo(f"note: scoring with PyTorch ({exc})", err=True)
        onnx_path = None
        gate = _gate(policy, threshold, weights, views, threads, 1, detector)
    click.echo(f"scoring with {'onnxruntime: ' + str(onnx_path) if onnx_path else 'PyTorch'}", err=True)
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
