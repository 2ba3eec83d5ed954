"""Label-noise protocols: pure functions of (labels, rate or transition matrix, seed).

- ``symmetric_noise``: the FER papers' protocol, each label changed with probability r to a
  uniformly chosen other class (or exactly round(r N) labels with ``exact=True``).
- ``matrix_noise``: class-conditional flips along a transition matrix T, with
  T[i, j] = P(noisy = j | given = i); ``pairwise_matrix`` builds one from class pairs
  (fear -> surprise, disgust -> anger, ...), ``load_transition`` reads one from a file.
- ``load_label_list``: EAC-style noisy lists (``<image name> <1-based label>`` per line).
- ``apply_noise``: a noisy copy of a manifest's frame plus the sidecar entry describing it;
  ``write_noisy_manifest`` writes it as a new manifest (never over the input, never over an
  existing table or sidecar unless asked).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ufer.data import schema
from ufer.data.manifest import ROW, Manifest, relocate_paths, write_manifest

PROTOCOLS = ("symmetric", "pairwise", "matrix", "list")
ROW_SUM_TOLERANCE = 1e-3

# Default pairs for the basic emotions: the confusions most common in FER data.
DEFAULT_PAIRS = {
    "fear": "surprise",
    "surprise": "fear",
    "disgust": "anger",
    "anger": "disgust",
    "sad": "neutral",
    "neutral": "sad",
    "contempt": "disgust",
}


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if num_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got {num_classes}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, found "
                         f"{labels.min()}..{labels.max()}")
    return labels


def _check_rate(rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must lie in [0, 1], got {rate}")
    return float(rate)


def symmetric_noise(labels: np.ndarray, num_classes: int, rate: float, seed: int, *,
                    exact: bool = False) -> np.ndarray:
    """Change labels to a uniformly chosen OTHER class.

    Args:
        labels: int array (N,) in 0..C-1; not modified.
        num_classes: C >= 2.
        rate: r in [0, 1]. Each label is changed independently with probability r, or with
            ``exact=True`` exactly round(r N) labels, chosen uniformly without replacement.
        seed: seed of the numpy generator; same seed, same output.

    Returns:
        New int64 array (N,); a changed label never equals its input label.
    """
    labels = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    rng = np.random.default_rng(seed)
    n = len(labels)
    if exact:
        flip = np.zeros(n, dtype=bool)
        flip[rng.choice(n, size=round(rate * n), replace=False)] = True
    else:
        flip = rng.random(n) < rate
    noisy = labels.astype(np.int64)
    offsets = rng.integers(1, num_classes, size=int(flip.sum()))
    noisy[flip] = (noisy[flip] + offsets) % num_classes
    return noisy


def validate_transition(transition: np.ndarray, num_classes: int | None = None,
                        source: str = "transition matrix") -> np.ndarray:
    """Check a transition matrix and return it as float64 (C, C) with rows renormalised.

    Raises:
        ValueError: not square, wrong size, not finite, negative, or a row not summing to 1
            (tolerance 1e-3); the message names ``source`` and the row.
    """
    t = np.asarray(transition, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"{source}: must be a square C x C matrix, got shape {t.shape}")
    if num_classes is not None and t.shape[0] != num_classes:
        raise ValueError(f"{source}: is {t.shape[0]} x {t.shape[1]} but there are "
                         f"{num_classes} classes")
    if not np.isfinite(t).all():
        row = int(np.flatnonzero(~np.isfinite(t).all(axis=1))[0])
        raise ValueError(f"{source}: row {row} has a non-finite value")
    if (t < 0).any():
        row = int(np.flatnonzero((t < 0).any(axis=1))[0])
        raise ValueError(f"{source}: row {row} has a negative probability")
    sums = t.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if len(bad):
        raise ValueError(f"{source}: row {bad[0]} sums to {sums[bad[0]]:.6g}, not 1 "
                         f"(T[i, j] = P(noisy = j | given = i))")
    return t / sums[:, None]


def matrix_noise(labels: np.ndarray, transition: np.ndarray, seed: int) -> np.ndarray:
    """Class-conditional noise: label i becomes j with probability T[i, j].

    Args:
        labels: int array (N,) in 0..C-1; not modified.
        transition: (C, C) row-stochastic, T[i, j] = P(noisy = j | given = i).
        seed: seed of the numpy generator.

    Returns:
        New int64 array (N,).
    """
    t = validate_transition(transition)
    labels = _check_labels(labels, len(t))
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(t, axis=1)[labels]  # (N, C)
    draws = rng.random(len(labels))
    noisy = (draws[:, None] >= cumulative).sum(axis=1)
    return np.minimum(noisy, len(t) - 1).astype(np.int64)


def pairwise_matrix(num_classes: int, rate: float, pairs: Mapping[int, int]) -> np.ndarray:
    """Transition matrix moving a fraction ``rate`` of class ``a`` to ``pairs[a]``.

    Args:
        num_classes: C.
        rate: r in [0, 1].
        pairs: source class index -> target class index (different); unlisted classes keep
            their labels.

    Returns:
        float64 (C, C): T[a, a] = 1 - r, T[a, pairs[a]] = r, identity rows elsewhere.
    """
    rate = _check_rate(rate)
    t = np.eye(num_classes)
    for source, target in pairs.items():
        if not (0 <= source < num_classes and 0 <= target < num_classes) or source == target:
            raise ValueError(f"pair {source} -> {target} is not two different classes "
                             f"in 0..{num_classes - 1}")
        t[source, source] = 1.0 - rate
        t[source, target] = rate
    return t


def pairs_by_name(classes: list[str], names: Mapping[str, str] = DEFAULT_PAIRS) -> dict[int, int]:
    """Turn ``{"fear": "surprise", ...}`` into class indices, keeping pairs of known classes.

    Raises:
        ValueError: no pair has both names among ``classes``.
    """
    index = {name: k for k, name in enumerate(classes)}
    pairs = {index[a]: index[b] for a, b in names.items() if a in index and b in index}
    if not pairs:
        raise ValueError(f"none of the pairs {dict(names)} names two of the classes {classes}")
    return pairs


def load_transition(path: str | Path, num_classes: int | None = None) -> np.ndarray:
    """Read a transition matrix from ``.npy`` or a headerless numeric ``.csv``.

    Returns:
        float64 (C, C), validated (see ``validate_transition``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transition matrix not found: {path}")
    if path.suffix == ".npy":
        matrix = np.load(path, allow_pickle=False)
    elif path.suffix == ".csv":
        try:
            matrix = np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError as exc:
            raise ValueError(f"{path}: not a numeric CSV matrix ({exc})") from exc
    else:
        raise ValueError(f"{path}: a transition matrix must be .npy or .csv")
    return validate_transition(matrix, num_classes, source=str(path))


def scaled_transition(path: str | Path, num_classes: int, rate: float) -> np.ndarray:
    """A transition-matrix file's flip pattern scaled to ``rate``: (1 - r) I + r Q, where Q
    is the file's off-diagonal part with rows renormalised (rows without flips stay I).
    What ``ufer bench --protocol FILE`` applies at each noise rate of its grid."""
    t = load_transition(path, num_classes)
    eye = np.eye(num_classes)
    off = t * (1.0 - eye)
    sums = off.sum(1, keepdims=True)
    q = np.where(sums > 0, off / np.where(sums > 0, sums, 1.0), eye)
    scaled = np.where(sums > 0, (1.0 - rate) * eye + rate * q, eye)
    return validate_transition(scaled, num_classes, source=str(path))


def load_label_list(path: str | Path) -> dict[str, int]:
    """Read an EAC-style label list: ``<image name> <label 1-based>`` per line.

    Returns:
        image name -> 0-based label.

    Raises:
        ValueError: a malformed line, naming file and line.
    """
    path = Path(path)
    labels: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) < 1:
            raise ValueError(f"{path}, line {number}: expected '<image name> <label 1-based>', "
                             f"got {line!r}")
        labels[fields[0]] = int(fields[1]) - 1
    return labels


def _list_noise(paths: np.ndarray, rows: np.ndarray, label_list: Mapping[str, int],
                num_classes: int) -> np.ndarray:
    """Labels looked up by image name (also without RAF-DB's ``_aligned`` suffix)."""
    noisy = np.empty(len(paths), dtype=np.int64)
    for k, rel in enumerate(paths):
        name = Path(rel).name
        label = label_list.get(name, label_list.get(name.replace("_aligned", "")))
        if label is None or not 0 <= label < num_classes:
            raise ValueError(f"label list has no label in 0..{num_classes - 1} for image "
                             f"{rel!r} (manifest row {rows[k]})")
        noisy[k] = label
    return noisy


def flip_counts(given: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 (C, C): counts[i, j] = rows with given label i and noisy label j."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(given), np.asarray(noisy)), 1)
    return counts


def apply_noise(manifest: Manifest, *, protocol: str, rate: float | None, seed: int,
                exact: bool = False, transition: np.ndarray | None = None,
                splits: Iterable[str] = ("train",),
                label_list: Mapping[str, int] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Inject label noise into some splits of a manifest; the manifest is not modified.

    Args:
        manifest: validated manifest.
        protocol: ``symmetric`` (needs ``rate``), ``pairwise`` (``rate``; pairs from
            ``DEFAULT_PAIRS`` unless ``transition`` is given), ``matrix`` (``transition``)
            or ``list`` (``label_list``: image name -> noisy label).
        rate: noise rate r in [0, 1] (symmetric, pairwise).
        seed: seed of the noise; same seed, same labels.
        exact: symmetric only: change exactly round(r N) labels.
        transition: (C, C) row-stochastic matrix, T[i, j] = P(noisy = j | given = i).
        splits: the splits whose labels change; other rows are copied unchanged.
        label_list: for ``list``.

    Returns:
        (frame, meta): a new frame with ``given_label`` (label before noise), ``clean_label``
        (kept if present, else the label before noise), ``label`` (noisy) and ``noisy``
        (label != clean_label); and the sidecar dict with ``noise`` = {protocol, rate, exact,
        seed, splits, flipped, realised_rate, flip_counts, transition (when used)}.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown noise protocol {protocol!r}; expected one of {PROTOCOLS}")
    splits = list(splits)
    frame = manifest.frame.drop(columns=[ROW], errors="ignore").copy()
    chosen = frame[schema.SPLIT].isin(splits).to_numpy()
    if not chosen.any():
        raise ValueError(f"{manifest.path}: no rows in splits {splits}")
    given = frame[schema.LABEL].to_numpy(dtype=np.int64)
    c = manifest.num_classes
    if protocol == "pairwise" and transition is None:
        transition = pairwise_matrix(c, _need(rate, protocol), pairs_by_name(manifest.classes))
    noisy_part = _noisy_labels(manifest, chosen, protocol, rate, seed, exact, transition,
                               label_list)
    labels = given.copy()
    labels[chosen] = noisy_part
    if schema.CLEAN_LABEL not in frame.columns:
        frame[schema.CLEAN_LABEL] = given
    frame[schema.GIVEN_LABEL] = given
    frame[schema.LABEL] = labels
    frame[schema.NOISY] = frame[schema.LABEL] != frame[schema.CLEAN_LABEL]
    flipped = int((noisy_part != given[chosen]).sum())
    noise = {
        "protocol": protocol, "rate": rate, "exact": bool(exact), "seed": int(seed),
        "splits": splits, "flipped": flipped, "realised_rate": flipped / int(chosen.sum()),
        "flip_counts": flip_counts(given[chosen], noisy_part, c).tolist(),
    }
    if protocol in ("pairwise", "matrix"):
        noise["transition"] = np.asarray(transition, dtype=np.float64).tolist()
    meta = {k: v for k, v in manifest.meta.items() if k != "counts"}
    return frame, {**meta, "noise": noise}


def _need(rate: float | None, protocol: str) -> float:
    if rate is None:
        raise ValueError(f"noise protocol {protocol!r} needs a rate")
    return rate


def _noisy_labels(manifest: Manifest, chosen: np.ndarray, protocol: str, rate: float | None,
                  seed: int, exact: bool, transition: np.ndarray | None,
                  label_list: Mapping[str, int] | None) -> np.ndarray:
    """The new labels of the chosen rows, int64 (chosen.sum(),)."""
    c = manifest.num_classes
    labels = manifest.frame[schema.LABEL].to_numpy(dtype=np.int64)[chosen]
    if protocol == "symmetric":
        return symmetric_noise(labels, c, _need(rate, protocol), seed, exact=exact)
    if protocol == "list":
        if label_list is None:
            raise ValueError("noise protocol 'list' needs a label list")
        frame = manifest.frame
        rows = frame[ROW].to_numpy() if ROW in frame.columns else np.arange(len(frame))
        return _list_noise(frame[schema.PATH].to_numpy()[chosen], rows[chosen], label_list, c)
    if transition is None:
        raise ValueError(f"noise protocol {protocol!r} needs a transition matrix")
    return matrix_noise(labels, validate_transition(transition, c), seed)


def check_output(source: str | Path, out: str | Path, overwrite: bool = False) -> None:
    """Refuse to write a derived manifest ``out`` over the input ``source`` (its table or its
    sidecar), or over an existing table or sidecar without ``overwrite``."""
    source, out = Path(source), Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"{out}: a manifest must end in .csv or .parquet")
    same_table = out.resolve() == source.resolve()
    same_sidecar = schema.sidecar_path(out).resolve() == schema.sidecar_path(source).resolve()
    if same_table or same_sidecar:
        raise ValueError(f"{out} would overwrite the input manifest {source} (or its sidecar "
                         f"{schema.sidecar_path(source)}); choose another name")
    for existing in (out, schema.sidecar_path(out)):
        if existing.exists() and not overwrite:
            raise FileExistsError(f"{existing} exists; pass --overwrite to replace it")


def write_noisy_manifest(manifest: Manifest, out: str | Path, *, overwrite: bool = False,
                         **noise: Any) -> tuple[Path, dict[str, Any]]:
    """``apply_noise(manifest, **noise)`` written as the NEW manifest ``out``.

    Image paths are rewritten relative to ``out``'s folder; the sidecar records the noise and
    its source. The table and sidecar are written under temporary names and renamed, the
    table last, so an interrupted write never leaves a half manifest under ``out``.

    Returns:
        (``out``, the sidecar's ``noise`` entry).
    """
    out = Path(out)
    check_output(manifest.path, out, overwrite)
    frame, meta = apply_noise(manifest, **noise)
    frame[schema.PATH] = relocate_paths(frame[schema.PATH], manifest.root, out.parent)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    write_manifest(frame, {**meta, "noise_source": str(manifest.path)}, tmp)
    schema.sidecar_path(tmp).replace(schema.sidecar_path(out))
    tmp.replace(out)
    return out, meta["noise"]
