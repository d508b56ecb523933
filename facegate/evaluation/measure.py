"""Measuring captures for evaluation: every quality method and the recognizer's embedding
of each capture, in one pass over the shared capture stage (so evaluation sees exactly the
faces the gate sees).
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..capture import CaptureSettings, CaptureStage
from ..components import COMPONENTS
from ..errors import ConfigError
from ..scorer import VIEWS, create_scorer

log = logging.getLogger(__name__)

__all__ = ["BASELINES", "COMPONENT", "OBSERVER", "Method", "MeasuredCaptures", "measure_captures", "impostor_comparisons",
           "labelled_captures", "laplacian_variance", "view_name"]


@dataclass(frozen=True, order=True)
class Method:
    """A quality method: facegate's ensemble or one member at a view setting, the FROQ
    observer, a baseline, or a reference curve. ``str(method)`` is its display name."""

    name: str
    views: str | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.views})" if self.views else self.name


ENSEMBLE = "ensemble"
OBSERVER = Method("FROQ observer")
#: Baselines a user would try first, each a quality per capture (higher is better).
BASELINES = (Method("MTCNN probability"), Method("face size (px)"), Method("Laplacian variance"))
DETECTION = "detection"
#: The ``views`` field of a quality component's :class:`Method`.
COMPONENT = "component"


def view_name(views: tuple[str, ...]) -> str:
    """The name in :data:`facegate.scorer.VIEWS` of a tuple of view names."""
    for name, value in VIEWS.items():
        if tuple(views) == value:
            return name
    return "+".join(views)


@dataclass
class MeasuredCaptures:
    """What the evaluation needs of each of N captures.

    Attributes:
        names: ``(N,)`` capture names (paths).
        identities: ``(N,)`` identity labels.
        found: ``(N,)`` whether the detector found a face; every method gives captures
            without one the lowest quality (the gate would reject them as ``no_face``), and
            the recognizer embeds them at the average landmark position instead.
        embeddings: ``(N, D)`` unit vectors from the recognizer.
        landmarks: ``(N, 5, 2)`` landmarks of the primary face (NaN where none).
        quality: method -> ``(N,)`` quality, higher is better, ``-inf`` where no face.
        seconds: method display name (or ``"detection"``) -> seconds spent computing it.
    """

    names: list[str]
    identities: np.ndarray
    found: np.ndarray
    embeddings: np.ndarray
    landmarks: np.ndarray
    quality: dict[Method, np.ndarray]
    seconds: dict[str, float]

    def subset(self, idx) -> "MeasuredCaptures":
        idx = np.asarray(idx)
        return MeasuredCaptures([self.names[i] for i in idx], self.identities[idx], self.found[idx],
                                self.embeddings[idx], self.landmarks[idx],
                                {m: q[idx] for m, q in self.quality.items()}, dict(self.seconds))

    def concat(self, other: "MeasuredCaptures") -> "MeasuredCaptures":
        return MeasuredCaptures(self.names + other.names, np.concatenate([self.identities, other.identities]),
                                np.concatenate([self.found, other.found]),
                                np.concatenate([self.embeddings, other.embeddings]),
                                np.concatenate([self.landmarks, other.landmarks]),
                                {m: np.concatenate([q, other.quality[m]]) for m, q in self.quality.items()},
                                {m: self.seconds.get(m, 0.0) + other.seconds.get(m, 0.0)
                                 for m in set(self.seconds) | set(other.seconds)})

    def save(self, path) -> None:
        methods = list(self.quality)
        np.savez_compressed(path, names=np.array(self.names), identities=self.identities, found=self.found,
                            embeddings=self.embeddings, landmarks=self.landmarks,
                            method_names=np.array([m.name for m in methods]),
                            method_views=np.array([m.views or "" for m in methods]),
                            quality=np.stack(list(self.quality.values())),
                            seconds_keys=np.array(list(self.seconds)), seconds=np.array(list(self.seconds.values())))

    @classmethod
    def load(cls, path) -> "MeasuredCaptures":
        data = np.load(path, allow_pickle=False)
        methods = [Method(str(n), str(v) or None) for n, v in zip(data["method_names"], data["method_views"])]
        return cls([str(n) for n in data["names"]], data["identities"], data["found"], data["embeddings"],
                   data["landmarks"], dict(zip(methods, data["quality"])),
                   dict(zip([str(k) for k in data["seconds_keys"]], data["seconds"].tolist())))


def laplacian_variance(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: the classic sharpness measure."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def measure_captures(images, identities, *, recognizer, gate=None, weights=None, capture=None,
                     observer=None, views=("none", "full"), baselines: bool = True, components: bool = False,
                     batch_size: int = 32, progress=None) -> MeasuredCaptures:
    """Run the capture stage, score with every facegate variant and every baseline, and embed.

    Args:
        images: paths (or ``(H, W, 3)`` uint8 RGB arrays) of the captures.
        identities: one label per capture.
        recognizer: a :class:`facegate.recognition.Recognizer` (``embed(images, landmarks)``).
        gate: a :class:`facegate.Gate` whose capture stage and scorer to use (its scorer
            serves the view setting it was built with); default: one built from ``weights``
            and ``capture``.
        capture: the :class:`facegate.capture.CaptureSettings` of the stage built when no
            ``gate`` is given (default: the gate's defaults, which look again where no face is
            found, as the training labels were made, so a washed-out face found on a darkened
            copy is scored, not counted as no face).
        observer: optional :class:`facegate.observer.ObserverScorer`, scored as :data:`OBSERVER`.
        views: test-time view settings to score each member and the ensemble with.
        baselines: also measure :data:`BASELINES`.
        components: also measure each quality component (``Method(name, "component")``,
            its 0-100 quality; 50 where it could not be measured).
        progress: called with the number of captures done after each batch.
    """
    if gate is not None:
        stage, own = gate.capture, {view_name(gate.scorer.views): gate.scorer}
    else:
        stage, own = None, {}
    scorers = {v: own.get(v) or create_scorer(weights, views=v) for v in views}
    spec = next(iter(scorers.values())).spec
    stage = stage or CaptureStage(spec, capture or CaptureSettings())
    methods = [Method(m, v) for v in views for m in spec.members] + [Method(ENSEMBLE, v) for v in views]
    methods += (list(BASELINES) if baselines else []) + ([OBSERVER] if observer is not None else [])
    methods += [Method(name, COMPONENT) for name in COMPONENTS] if components else []
    run = _Measuring(len(images), methods, scorers, recognizer, observer)
    for start in range(0, len(images), batch_size):
        batch = []
        for i in range(start, min(len(images), start + batch_size)):
            image = images[i]
            analyse = stage.analyse_rgb if isinstance(image, np.ndarray) else stage.analyse
            capture = run.timed(DETECTION, analyse, image)
            if capture.rgb is None:  # unreadable: it cannot match anything; zero embedding, lowest quality
                log.warning("skipped: %s: %s", capture.source, capture.error)
                run.without_face[i] = None
            elif capture.primary is None:
                run.without_face[i] = capture.rgb
            else:
                batch.append((i, capture))
        if batch:
            run.measure_faces(*zip(*batch))
        if progress is not None:
            progress(min(len(images), start + batch_size))
    return MeasuredCaptures([str(x) if not isinstance(x, np.ndarray) else f"#{k}" for k, x in enumerate(images)],
                            np.asarray(identities), run.found, run.embeddings(), run.landmarks, run.quality,
                            run.seconds)


class _Measuring:
    """What :func:`measure_captures` gathers batch by batch: each method's quality (lowest,
    ``-inf``, where no face was found), the time each took, the landmarks and embeddings."""

    def __init__(self, n: int, methods: list, scorers: dict, recognizer, observer):
        self.scorers, self.recognizer, self.observer = scorers, recognizer, observer
        self.quality = {m: np.full(n, -np.inf) for m in methods}
        self.seconds = {str(m): 0.0 for m in methods}
        self.seconds[DETECTION] = 0.0
        self.found = np.zeros(n, bool)
        self.landmarks = np.full((n, 5, 2), np.nan)
        self._embeddings: list[np.ndarray | None] = [None] * n
        self.without_face: dict[int, np.ndarray | None] = {}  # index -> its image (None: unreadable)
        self._landmark_sum, self._landmark_count = np.zeros((5, 2)), 0

    def timed(self, name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        self.seconds[name] += time.perf_counter() - t0
        return out

    def measure_faces(self, idx: tuple[int, ...], captures: tuple) -> None:
        idx, quality = list(idx), self.quality
        faces = [c.primary for c in captures]
        rgbs = [c.rgb for c in captures]
        self.found[idx] = True
        self.landmarks[idx] = [f.landmarks for f in faces]
        for c in captures:
            self._landmark_sum += c.primary.landmarks / np.array(c.image_size)
            self._landmark_count += 1
        on_rgb = [c.in_rgb(c.primary.landmarks) for c in captures]
        crops = np.stack([c.crop for c in captures])
        for v, scorer in self.scorers.items():
            scores = self.timed(str(Method(ENSEMBLE, v)), scorer.score, crops)
            quality[Method(ENSEMBLE, v)][idx] = scores.ensemble
            for member, values in scores.members.items():
                quality[Method(member, v)][idx] = values
        if BASELINES[0] in quality:
            quality[BASELINES[0]][idx] = [f.probability for f in faces]
            quality[BASELINES[1]][idx] = [f.side for f in faces]
            quality[BASELINES[2]][idx] = self.timed(str(BASELINES[2]), lambda: [laplacian_variance(c) for c in crops])
        for name in COMPONENTS:
            if Method(name, COMPONENT) in quality:
                quality[Method(name, COMPONENT)][idx] = [_component_quality(c, name) for c in captures]
        if self.observer is not None:
            quality[OBSERVER][idx] = self.timed(str(OBSERVER), self.observer.score, rgbs, on_rgb)
        for i, e in zip(idx, self.recognizer.embed(rgbs, on_rgb)):
            self._embeddings[i] = e

    def embeddings(self) -> np.ndarray:
        """Every capture's embedding: where no face was found, the whole image embedded on the
        mean landmarks of the found faces (what a recognizer given that capture would compare);
        an unreadable capture, zeros."""
        mean = self._landmark_sum / self._landmark_count if self._landmark_count else CENTRED_LANDMARKS
        for i, rgb in self.without_face.items():
            if rgb is not None:
                self._embeddings[i] = self.recognizer.embed([rgb], [mean * np.array(rgb.shape[1::-1])])[0]
        dim = next((len(e) for e in self._embeddings if e is not None), 1)
        return np.stack([e if e is not None else np.zeros(dim, np.float32) for e in self._embeddings])


def _component_quality(capture, name: str) -> float:
    components = capture.components
    quality = None if components is None else components[name].quality
    return 50.0 if quality is None else quality


#: Landmarks of a centred frontal face, as fractions of the image width and height.
CENTRED_LANDMARKS = np.array([[0.38, 0.42], [0.62, 0.42], [0.5, 0.55], [0.41, 0.68], [0.59, 0.68]])


def impostor_comparisons(measured: MeasuredCaptures, rows=None, cols=None, max_comparisons: int = 20_000_000,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every comparison between captures of different identities, as ``(P, 2)`` index pairs
    and ``(P,)`` cosine scores; a seeded random subset when there would be more than
    ``max_comparisons``. By default each unordered pair of all captures once; with ``rows``
    and ``cols`` (index arrays) only comparisons of a ``rows`` capture with a ``cols`` one,
    e.g. enrolled references against probes."""
    emb, ident = measured.embeddings.astype(np.float32), measured.identities
    n = len(ident)
    symmetric = rows is None and cols is None
    rows = np.arange(n) if rows is None else np.asarray(rows)
    cols = np.arange(n) if cols is None else np.asarray(cols)
    pairs, scores = [], []
    for start in range(0, len(rows), 512):
        block = rows[start : start + 512]
        sims = emb[block] @ emb[cols].T
        mask = ident[block, None] != ident[None, cols]
        if symmetric:
            mask &= cols[None, :] > block[:, None]
        r, c = np.nonzero(mask)
        pairs.append(np.stack([block[r], cols[c]], 1).astype(np.int32))
        scores.append(sims[r, c])
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int32)
    scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    if len(scores) > max_comparisons:
        keep = np.sort(np.random.default_rng(seed).choice(len(scores), max_comparisons, replace=False))
        pairs, scores = pairs[keep], scores[keep]
    return pairs, scores


def labelled_captures(source, pairs_file=None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Captures with identities, and the genuine comparisons to evaluate.

    ``source`` is a folder with one sub-folder per identity (every pair of captures of the
    same identity is a genuine comparison), or, with ``pairs_file``, a CSV with columns
    ``left,right,genuine`` (paths relative to the CSV's folder unless absolute; the
    identity of a capture is its parent folder's name unless ``left_id``/``right_id``
    columns give it). Returns paths, ``(N,)`` identities and ``(G, 2)`` genuine index pairs.
    """
    from ..folder import find_images

    if pairs_file is not None:
        pairs_file = Path(pairs_file)
        paths, ident, index, genuine = [], [], {}, []
        with pairs_file.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"left", "right", "genuine"} <= set(reader.fieldnames):
                raise ConfigError(f"{pairs_file}: needs a header with left,right,genuine columns")
            for row in reader:
                ids = []
                for side in ("left", "right"):
                    p = Path(row[side])
                    p = p if p.is_absolute() else pairs_file.parent / p
                    key = str(p)
                    if key not in index:
                        index[key] = len(paths)
                        paths.append(key)
                        ident.append(row.get(f"{side}_id") or p.parent.name)
                    ids.append(index[key])
                if row["genuine"].strip().lower() in ("1", "true", "yes", "genuine"):
                    genuine.append(ids)
        return paths, np.array(ident), np.array(genuine, dtype=int).reshape(-1, 2)
    root = Path(source)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder (expected one sub-folder per identity)")
    paths = [str(p) for p in find_images(root) if p.parent != root]
    if not paths:
        raise ConfigError(f"{root}: no images in identity sub-folders")
    ident = np.array([Path(p).parent.relative_to(root).as_posix() for p in paths])
    genuine = [(i, j) for i in range(len(paths)) for j in range(i + 1, len(paths)) if ident[i] == ident[j]]
    return paths, ident, np.array(genuine, dtype=int).reshape(-1, 2)
