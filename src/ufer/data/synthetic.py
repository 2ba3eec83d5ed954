"""The built-in synthetic expression dataset (``ufer synth``): faces with known truth.

Each sample's expression is *caused* by action-unit (AU) intensities drawn from an
EMFACS-like prototype of its true class, with individual variation and 15 % two-class
blends. Valence/arousal come from circumplex class centres; ten simulated annotators vote
from the true label distribution, more confusably for weak, blurred or occluded faces and
for similar classes; their majority is the training ``label``. The AUs offered to methods
are a noisy detection of the true occurrences. Synthetic data: never a substitute for
results on real faces.

Every sample is a pure function of ``(seed, split, index)``: its generator is
``numpy.random.default_rng([seed, split_id, index])``, so the output is byte-identical for
any number of worker processes.
"""
from __future__ import annotations

import dataclasses
import math
import multiprocessing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from ufer.data import schema
from ufer.data.faces import AUS, OCCLUDERS, FaceParams, Identity, render_face, sample_identity
from ufer.data.manifest import write_manifest

__all__ = [
    "AUS",
    "GENERATOR_VERSION",
    "PRESETS",
    "SynthConfig",
    "annotate",
    "detect_aus",
    "generate",
    "generate_identities",
    "make_config",
    "render_face",
    "sample_expression",
    "sample_face",
]

GENERATOR_VERSION = "ufer-synth-1.1"
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_IDENTITY_STREAM = 1_000_003  # rng key for identity parameters, apart from the split ids
# The pretraining set's people and images come from streams of their own, so no person of
# a pretraining set is a person of any expression dataset (whatever the seeds).
_PRETRAIN_IDENTITY_STREAM = 2_000_029
_PRETRAIN_IMAGE_STREAM = 2_000_039
_CHUNK = 200  # samples per task handed to a worker

# EMFACS-like prototypes: AU -> weight (scaled by the sample's intensity and jitter).
PROTOTYPES: dict[str, dict[int, float]] = {
    "neutral": {},
    "happy": {6: 0.8, 12: 1.0, 25: 0.5},
    "sad": {1: 0.9, 4: 0.6, 15: 0.9, 17: 0.4},
    "surprise": {1: 1.0, 2: 1.0, 5: 0.8, 25: 0.6, 26: 1.0},
    "fear": {1: 0.9, 2: 0.7, 4: 0.7, 5: 0.9, 7: 0.4, 20: 0.9, 25: 0.7, 26: 0.3},
    "disgust": {4: 0.3, 9: 1.0, 10: 0.7, 15: 0.5, 17: 0.5},
    "anger": {4: 1.0, 5: 0.5, 7: 0.8, 17: 0.3, 23: 0.8, 24: 0.6},
    "contempt": {12: 0.6, 14: 0.8},  # unilateral
}
# Circumplex centres (valence, arousal).
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0), "happy": (0.8, 0.5), "sad": (-0.7, -0.4), "surprise": (0.2, 0.85),
    "fear": (-0.6, 0.75), "disgust": (-0.7, 0.3), "anger": (-0.65, 0.7), "contempt": (-0.5, 0.2),
}
# Pairs annotators confuse most.
SIMILAR = (("fear", "surprise"), ("anger", "disgust"), ("sad", "neutral"),
           ("contempt", "neutral"), ("contempt", "disgust"))


# RAF-DB basic's training-split shares in EMOTIONS7 order (neutral, happy, sad, surprise,
# fear, disgust, anger): 2524, 4772, 1982, 1290, 281, 717, 705 of 12,271 (peers.md 5.1).
RAFDB_PRIOR = (2524 / 12271, 4772 / 12271, 1982 / 12271, 1290 / 12271, 281 / 12271,
               717 / 12271, 705 / 12271)


@dataclass
class SynthConfig:
    """Sizes, class balance, expression variation, nuisances, annotators and AU detector."""

    n_train: int = 3000
    n_val: int = 500
    n_test: int = 1000
    image_size: int = 48  # output side in pixels (drawn at 128, 256 above 128)
    classes: int = 7  # 7 (schema.EMOTIONS7) or 8 (adds contempt)
    class_prior: tuple[float, ...] | None = None  # None: uniform class sampling
    balanced_splits: tuple[str, ...] = ()  # splits with exactly cycling classes (i % classes)
    samples_per_identity: int = 10  # identity pool of a split = ceil(n / this), disjoint
    intensity: tuple[float, float] = (0.55, 1.0)  # global AU gain, uniform
    au_jitter: tuple[float, float] = (0.6, 1.1)  # per-AU factor, uniform
    au_drop: float = 0.15  # probability to drop each prototype AU
    au_add: float = 0.3  # probability to add one random AU at U(0.1, 0.5)
    blend_rate: float = 0.15  # share of faces blending two classes
    blend_weight: tuple[float, float] = (0.25, 0.45)  # weight of the secondary class
    va_noise: float = 0.08  # sigma of the noise added to valence and arousal
    rotation: float = 15.0  # max in-plane rotation, degrees
    scale: tuple[float, float] = (0.92, 1.08)
    shift: float = 6.0  # max shift, px at 128
    light: float = 0.5  # max lighting-gradient amplitude
    contrast: tuple[float, float] = (0.7, 1.2)
    brightness: float = 25.0  # max brightness offset (0..255 units)
    blur_rate: float = 0.5  # share of blurred images
    blur_max: float = 1.3  # max blur sigma, px at 128
    noise_max: float = 4.0  # max pixel-noise sigma at the output size
    occlusion_rate: float = 0.15
    annotators: int = 10
    confusion: float = 0.05  # base share of each annotator's vote moved to confusable classes
    confusion_weak: float = 0.3  # extra confusion at the weakest intensity (x low**2)
    confusion_blur: float = 0.15  # extra confusion at the strongest blur
    confusion_occluded: float = 0.2  # extra confusion when occluded
    au_threshold: float = 0.3  # true occurrence = intensity >= this
    au_miss: float = 0.15  # P(offered 0 | occurring)
    au_false_alarm: float = 0.05  # P(offered 1 | not occurring)


PRESETS: dict[str, SynthConfig] = {
    "tiny": SynthConfig(n_train=200, n_val=50, n_test=100, image_size=32),
    "demo": SynthConfig(n_train=3000, n_val=500, n_test=1000, image_size=48),
    "bench-cpu": SynthConfig(n_train=3000, n_val=500, n_test=2000, image_size=48,
                             balanced_splits=("test",)),
    "bench": SynthConfig(n_train=12000, n_val=1500, n_test=3000, image_size=112),
    # the papers' regime at 48 px: enough images for their batch of 512 (19 steps/epoch)
    "bench-paper": SynthConfig(n_train=10000, n_val=1000, n_test=2000, image_size=48,
                               balanced_splits=("train", "test")),
    # RAF-DB's class shares (train and test), the imbalance real training sets have
    "bench-raf": SynthConfig(n_train=10000, n_val=1000, n_test=2000, image_size=48,
                             class_prior=RAFDB_PRIOR),
}


def make_config(preset: str = "demo", **overrides: Any) -> SynthConfig:
    """The preset's config with ``overrides`` (SynthConfig field names) applied, validated."""
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; choose from {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(SynthConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown SynthConfig field(s) {unknown}; fields are {sorted(fields)}")
    cfg = dataclasses.replace(PRESETS[preset], **overrides)
    if cfg.classes not in (7, 8):
        raise ValueError(f"classes must be 7 or 8, got {cfg.classes}")
    if cfg.class_prior is not None and len(cfg.class_prior) != cfg.classes:
        raise ValueError(f"class_prior has {len(cfg.class_prior)} entries, "
                         f"expected {cfg.classes}")
    if cfg.class_prior is not None and (min(cfg.class_prior) < 0 or sum(cfg.class_prior) <= 0):
        raise ValueError(f"class_prior must be non-negative with a positive sum, got "
                         f"{cfg.class_prior}")
    if cfg.n_train < 1 or cfg.n_val < 0 or cfg.n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_val, n_test >= 0; got n_train={cfg.n_train}, "
                         f"n_val={cfg.n_val}, n_test={cfg.n_test}")
    if cfg.image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {cfg.image_size}")
    return cfg


def class_names(cfg: SynthConfig) -> tuple[str, ...]:
    """Class order of the dataset: ``schema.EMOTIONS7`` or ``schema.EMOTIONS8``."""
    return schema.EMOTIONS8 if cfg.classes == 8 else schema.EMOTIONS7


@lru_cache(maxsize=4096)
def identity_for(seed: int, identity: int) -> Identity:
    """Face parameters of person ``identity`` (pure function of seed and id)."""
    return sample_identity(np.random.default_rng([seed, _IDENTITY_STREAM, identity]))


@lru_cache(maxsize=4096)
def pretrain_identity(seed: int, identity: int) -> Identity:
    """Face parameters of pretraining person ``identity``: drawn from a stream no expression
    dataset uses (``identity_for`` draws theirs), so the two never share a person."""
    return sample_identity(np.random.default_rng([seed, _PRETRAIN_IDENTITY_STREAM, identity]))


def identity_pools(cfg: SynthConfig) -> dict[str, tuple[int, int]]:
    """Per split ``(first id, pool size)``; the pools of the splits are disjoint."""
    pools, start = {}, 0
    for split in schema.SPLITS:
        size = max(1, math.ceil(getattr(cfg, f"n_{split}") / cfg.samples_per_identity))
        pools[split], start = (start, size), start + size
    return pools


def _prototype(rng: np.random.Generator, cfg: SynthConfig, name: str, gain: float) -> np.ndarray:
    """One class's AU vector ``(len(AUS),)`` in [0, 1] with jitter, drops and additions."""
    aus = np.zeros(len(AUS))
    for au, w in PROTOTYPES[name].items():
        keep = rng.random() >= cfg.au_drop
        aus[AUS.index(au)] = keep * w * gain * rng.uniform(*cfg.au_jitter)
    if name == "neutral":
        for j in rng.choice(len(AUS), size=rng.integers(3), replace=False):
            aus[j] = rng.uniform(0.0, 0.2)
    elif rng.random() < cfg.au_add:
        j = rng.integers(len(AUS))
        aus[j] = max(aus[j], rng.uniform(0.1, 0.5))
    return np.clip(aus, 0.0, 1.0)


def sample_expression(rng: np.random.Generator, cfg: SynthConfig, primary: int) -> dict[str, Any]:
    """AUs, blend and true label distribution of one face whose true class is ``primary``.

    Returns a dict with ``aus`` (len(AUS),) in [0, 1], ``dist`` (classes,) summing to 1,
    ``blend_class`` (-1 if none), ``blend_weight`` in [0, 0.45], ``intensity`` in [0, 1]
    and ``lateral`` (0, or -1/+1 for the side of a unilateral AU12/AU14).
    """
    names = class_names(cfg)
    gain = rng.uniform(*cfg.intensity)
    aus = _prototype(rng, cfg, names[primary], gain)
    dist = np.zeros(len(names))
    dist[primary] = 1.0
    blend, weight = -1, 0.0
    if rng.random() < cfg.blend_rate:
        blend = int((primary + rng.integers(1, len(names))) % len(names))
        weight = rng.uniform(*cfg.blend_weight)
        second = _prototype(rng, cfg, names[blend], gain)
        aus = np.clip(1.25 * ((1 - weight) * aus + weight * second), 0.0, 1.0)
        dist[primary], dist[blend] = 1 - weight, weight
    lateral = int(rng.choice((-1, 1))) if "contempt" in (names[primary], names[blend]) else 0
    return {"aus": aus, "dist": dist, "blend_class": blend, "blend_weight": weight,
            "intensity": gain, "lateral": lateral}


def valence_arousal(rng: np.random.Generator, cfg: SynthConfig, dist: np.ndarray,
                    intensity: float) -> tuple[float, float]:
    """Circumplex centres mixed by ``dist``, scaled by intensity, plus noise; in [-1, 1]."""
    centres = np.array([CIRCUMPLEX[c] for c in class_names(cfg)])
    va = dist @ centres * intensity + rng.normal(0.0, cfg.va_noise, 2)
    return float(np.clip(va[0], -1, 1)), float(np.clip(va[1], -1, 1))


def confusion_matrix(cfg: SynthConfig) -> np.ndarray:
    """Row-stochastic ``(C, C)``: where a confused vote for class i goes (never to i)."""
    names = class_names(cfg)
    sim = np.full((len(names), len(names)), 0.1)
    for a, b in SIMILAR:
        if a in names and b in names:
            sim[names.index(a), names.index(b)] = sim[names.index(b), names.index(a)] = 1.0
    np.fill_diagonal(sim, 0.0)
    return sim / sim.sum(1, keepdims=True)


def annotate(rng: np.random.Generator, cfg: SynthConfig, dist: np.ndarray,
             difficulty: float) -> tuple[np.ndarray, int]:
    """Simulated annotators: vote fractions ``(C,)`` (sum 1) and the majority class.

    Each annotator votes from ``(1 - e) * dist + e * dist @ confusion_matrix`` with
    ``e = confusion + difficulty`` (clipped to 0.9); ties are broken by ``rng``.
    """
    e = min(0.9, cfg.confusion + difficulty)
    q = (1 - e) * dist + e * dist @ confusion_matrix(cfg)
    votes = rng.multinomial(cfg.annotators, q / q.sum())
    best = np.flatnonzero(votes == votes.max())
    return votes / cfg.annotators, int(best[rng.integers(len(best))])


def detect_aus(rng: np.random.Generator, cfg: SynthConfig, aus: np.ndarray) -> np.ndarray:
    """Noisy AU occurrence ``(len(AUS),)`` of 0.0/1.0: misses and false alarms at the config's
    rates, applied to the true occurrence ``aus >= au_threshold``."""
    occurring = aus >= cfg.au_threshold
    flip = rng.random(len(AUS)) < np.where(occurring, cfg.au_miss, cfg.au_false_alarm)
    return (occurring ^ flip).astype(float)


def _nuisances(rng: np.random.Generator, cfg: SynthConfig) -> dict[str, Any]:
    """Pose, photometry, blur, noise and occluder of one image (FaceParams keywords)."""
    occluded = rng.random() < cfg.occlusion_rate
    return {
        "rotation": rng.uniform(-cfg.rotation, cfg.rotation),
        "scale": rng.uniform(*cfg.scale),
        "shift_x": rng.uniform(-cfg.shift, cfg.shift),
        "shift_y": rng.uniform(-cfg.shift, cfg.shift),
        "light": rng.uniform(-cfg.light, cfg.light),
        "light_angle": rng.uniform(0, 2 * np.pi),
        "contrast": rng.uniform(*cfg.contrast),
        "brightness": rng.uniform(-cfg.brightness, cfg.brightness),
        "blur": rng.uniform(0, cfg.blur_max) if rng.random() < cfg.blur_rate else 0.0,
        "noise": rng.uniform(0, cfg.noise_max),
        "occluder": OCCLUDERS[1 + rng.integers(3)] if occluded else "none",
        "detail_seed": int(rng.integers(2**31)),
    }


def sample_face(cfg: SynthConfig, seed: int, split: str, index: int
                ) -> tuple[FaceParams, dict[str, Any]]:
    """Draw sample ``index`` of ``split``: its render parameters and its manifest fields
    (everything but ``path``; floats rounded to 4 decimals)."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    names = class_names(cfg)
    if split in cfg.balanced_splits:
        primary = index % len(names)
    else:
        prior = None if cfg.class_prior is None else np.asarray(cfg.class_prior, float)
        primary = int(rng.choice(len(names), p=None if prior is None else prior / prior.sum()))
    first, pool = identity_pools(cfg)[split]
    identity = first + int(rng.integers(pool))
    ex = sample_expression(rng, cfg, primary)
    valence, arousal = valence_arousal(rng, cfg, ex["dist"], ex["intensity"])
    nz = _nuisances(rng, cfg)
    low = (cfg.intensity[1] - ex["intensity"]) / max(1e-6, cfg.intensity[1] - cfg.intensity[0])
    difficulty = (cfg.confusion_weak * low**2 + cfg.confusion_blur * nz["blur"] / cfg.blur_max
                  + cfg.confusion_occluded * (nz["occluder"] != "none"))
    votes, label = annotate(rng, cfg, ex["dist"], difficulty)
    offered = detect_aus(rng, cfg, ex["aus"])
    params = FaceParams(identity=identity_for(seed, identity), aus=ex["aus"],
                        lateral=ex["lateral"], **nz)
    row: dict[str, Any] = {
        schema.SPLIT: split, schema.LABEL: label, schema.CLEAN_LABEL: primary,
        schema.NOISY: label != primary,
        schema.VALENCE: round(valence, 4), schema.AROUSAL: round(arousal, 4),
    }
    row.update({f"{schema.DIST_PREFIX}{c}": round(float(v), 4) for c, v in zip(names, votes)})
    row.update({schema.au_column(au): v for au, v in zip(AUS, offered)})
    row.update({f"{schema.TRUE_AU_PREFIX}{au:02d}": round(float(v), 4)
                for au, v in zip(AUS, ex["aus"])})
    row.update(identity=identity, blend_class=ex["blend_class"],
               blend_weight=round(ex["blend_weight"], 4), intensity=round(ex["intensity"], 4))
    row.update({k: round(nz[k], 4) for k in ("rotation", "scale", "shift_x", "shift_y",
                                             "light", "blur")})
    row["occluder"] = nz["occluder"]
    return params, row


def sample_identity_face(cfg: SynthConfig, seed: int, identity: int, index: int) -> FaceParams:
    """Image ``index`` of pretraining person ``identity``: an expression of a uniformly drawn
    class (blends, intensity and AU variation as in the expression data) and fresh nuisances.
    The expression is not recorded: a pretraining set only labels the person."""
    rng = np.random.default_rng([seed, _PRETRAIN_IMAGE_STREAM, identity, index])
    ex = sample_expression(rng, cfg, int(rng.integers(len(class_names(cfg)))))
    return FaceParams(identity=pretrain_identity(seed, identity), aus=ex["aus"],
                      lateral=ex["lateral"], **_nuisances(rng, cfg))


def _write_png(params: FaceParams, size: int, out: Path, rel: str) -> None:
    ok, png = cv2.imencode(".png", render_face(params, size)[:, :, ::-1])
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {rel}")
    (out / rel).write_bytes(png.tobytes())


def _render_chunk(task: tuple[SynthConfig, int, str, int, int, str]) -> list[dict[str, Any]]:
    """Render samples ``start..stop-1`` of a split to PNG files; returns their manifest rows."""
    cfg, seed, split, start, stop, out = task
    rows = []
    for i in range(start, stop):
        params, row = sample_face(cfg, seed, split, i)
        rel = f"images/{split}/{i:06d}.png"
        _write_png(params, cfg.image_size, Path(out), rel)
        rows.append({schema.PATH: rel, **row})
    return rows


def _render_identity_chunk(task: tuple[SynthConfig, int, int, int, int, str]
                           ) -> list[dict[str, Any]]:
    """Render every image of pretraining persons ``start..stop-1``; returns manifest rows
    (the first ``per_identity`` images of a person train, the rest are held out as ``val``)."""
    cfg, seed, per_identity, start, stop, out = task
    rows = []
    for person in range(start, stop):
        for k in range(per_identity + cfg.n_val):
            rel = f"images/{person:05d}/{k:03d}.png"
            (Path(out) / rel).parent.mkdir(parents=True, exist_ok=True)
            _write_png(sample_identity_face(cfg, seed, person, k), cfg.image_size, Path(out), rel)
            rows.append({schema.PATH: rel, schema.SPLIT: "train" if k < per_identity else "val",
                         schema.LABEL: person})
    return rows


def generate_identities(out: str | Path, identities: int = 400, per_identity: int = 30,
                        held_out: int = 5, seed: int = 0, image_size: int = 48,
                        workers: int = 1) -> Path:
    """The face-recognition stand-in (MS-Celeb-1M's role): ``identities`` synthetic persons
    disjoint from every expression dataset (``pretrain_identity``), ``per_identity`` training
    and ``held_out`` validation images each, every expression and nuisance varied; the label
    is the PERSON (classes ``id00000`` ...), never the expression. Same arguments give
    byte-identical files. Returns the manifest path.
    """
    if identities < 2 or per_identity < 1 or held_out < 1:
        raise ValueError(f"need >= 2 identities, >= 1 training and >= 1 held-out image each; "
                         f"got {identities}, {per_identity}, {held_out}")
    cfg = make_config("demo", image_size=image_size, n_val=held_out)
    out = Path(out)
    step = max(1, _CHUNK // (per_identity + held_out))
    tasks = [(cfg, seed, per_identity, s, min(s + step, identities), str(out))
             for s in range(0, identities, step)]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers, _init_worker) as pool:
            parts = pool.map(_render_identity_chunk, tasks, chunksize=1)
    else:
        parts = [_render_identity_chunk(t) for t in tasks]
    frame = pd.DataFrame([row for part in parts for row in part])
    meta = {"classes": [f"id{i:05d}" for i in range(identities)], "source": "synthetic-identities",
            "source_version": GENERATOR_VERSION, "seed": seed, "image_size": image_size,
            "identities": identities, "per_identity": per_identity, "held_out": held_out,
            "note": "Synthetic persons for identity pretraining (the MS-Celeb-1M stand-in); "
                    "labels are identities, never expressions."}
    return write_manifest(frame, meta, out / "manifest.csv")


def _init_worker() -> None:
    cv2.setNumThreads(1)


def generate(out: str | Path, preset: str = "demo", seed: int = 0, workers: int = 1,
             **overrides: Any) -> Path:
    """Write the dataset to ``out``: ``images/<split>/<index:06d>.png``, ``manifest.csv`` and
    its ``manifest.json`` sidecar. ``overrides`` replace SynthConfig fields of the preset.
    Same arguments give byte-identical files for any ``workers``. Returns the manifest path.
    ``workers > 1`` uses spawned processes: a calling script needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    cfg = make_config(preset, **overrides)
    out = Path(out)
    tasks = []
    for split in schema.SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        n = getattr(cfg, f"n_{split}")
        tasks += [(cfg, seed, split, s, min(s + _CHUNK, n), str(out)) for s in range(0, n, _CHUNK)]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers, _init_worker) as pool:
            parts = pool.map(_render_chunk, tasks, chunksize=1)
    else:
        parts = [_render_chunk(t) for t in tasks]
    frame = pd.DataFrame([row for part in parts for row in part])
    meta = {
        "classes": list(class_names(cfg)),
        "aus": [schema.au_column(au) for au in AUS],
        "source": "synthetic",
        "source_version": GENERATOR_VERSION,
        "preset": preset,
        "seed": seed,
        "image_size": cfg.image_size,
        "config": dataclasses.asdict(cfg),
        "au_occurrence_threshold": cfg.au_threshold,
        "annotators": cfg.annotators,
        "note": "Synthetic procedurally drawn faces with known truth; "
                "never a substitute for results on real faces.",
    }
    return write_manifest(frame, meta, out / "manifest.csv")
