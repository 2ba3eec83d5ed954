"""``Recognizer``: photos, video frames or face crops in, one row per face out.

A row holds where the picture came from, the face's box and five landmarks, one
probability per class and the top class, and — where the model has them — valence /
arousal, AU probabilities and POI's uncertainty. The column names follow py-feat
(``FaceRectX`` ... ``FaceScore``, one probability column per class name). A picture with
no face gives one row with ``status == "no face"``; an input that cannot be read gives
one row with ``status == "error"`` and the reason, and the batch goes on.

Preprocessing is the training run's, read from the checkpoint or bundle: faces are
aligned to the recorded template at the recorded crop size, resized to the input size
like the training loader does (``load_image_tensor``), then ``preprocess`` (/255, mean,
std). Inputs are never modified.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ufer.data.transforms import load_image_tensor, preprocess
from ufer.inference.detect import (
    ARCFACE_112,
    LANDMARK_NAMES,
    AlignmentTemplate,
    Face,
    FaceDetector,
    align,
)
from ufer.inference.inputs import Picture, pictures, to_rgb
from ufer.inference.network import InferenceNetwork

STATUS_OK, STATUS_NO_FACE, STATUS_ERROR = "ok", "no face", "error"
SOURCE_COLUMNS = ["input", "frame", "time_s", "face", "status", "error"]
BOX_COLUMNS = ["FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore"]
LANDMARK_COLUMNS = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"]


def template_from_record(record: dict[str, Any] | None) -> AlignmentTemplate:
    """The alignment template a bundle records (``AlignmentTemplate.to_dict``); ARCFACE_112
    when it records none."""
    if not record:
        return ARCFACE_112
    return AlignmentTemplate(record["name"], int(record["reference_size"]),
                             tuple((float(x), float(y)) for x, y in record["points"]))


def results_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Result rows as a DataFrame with ``columns``; ``frame`` and ``face`` as nullable
    integers (empty for still images and for rows without a face)."""
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"frame": "Int64", "face": "Int64"})


class Recognizer:
    """Facial expression recognition on photos, videos and aligned crops.

    Build it with :meth:`from_checkpoint` or :meth:`from_bundle`.

    Args:
        network: the inference network (FERNet and optional heads).
        meta: the bundle metadata (class names, preprocessing, alignment, provenance).
        detector: face detector for ``detect=True``; default: MTCNN, built on first use.
        device: where the network runs.
        image_size: network input side; default: the metadata's ``image_size``.
    """

    def __init__(self, network: InferenceNetwork, meta: dict[str, Any], *,
                 detector: FaceDetector | None = None, device: str | torch.device = "cpu",
                 image_size: int | None = None) -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.meta = meta
        size = image_size or meta.get("image_size")
        if not size:
            raise ValueError("the model does not record its input size; pass image_size")
        self.image_size = int(size)
        self.mean, self.std = tuple(meta["mean"]), tuple(meta["std"])
        names = list(meta.get("class_names") or [])
        self.class_names = names or [f"class_{k}" for k in range(int(meta["num_classes"]))]
        self.au_names = list(meta.get("au_names") or [])
        alignment = meta.get("alignment") or {}
        self.template = template_from_record(alignment.get("template"))
        self.crop_size = int(alignment.get("crop_size") or self.image_size)
        self._detector = detector
        others = [c for c in self.columns if c not in self.class_names]
        clash = sorted(set(others) & set(self.class_names))
        if clash or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class names must be unique and differ from the other result "
                             f"columns; got {self.class_names}")

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_checkpoint(cls, path: str | Path, *, heads: bool = True,
                        detector: FaceDetector | None = None, device: str = "cpu",
                        image_size: int | None = None) -> Recognizer:
        """From a training checkpoint (``weights_only`` load; needs the training code).

        ``heads``: also run the VA / AU heads the method has (the classes do not change).
        """
        from ufer.inference.export import (
            bundle_meta,
            load_trained,
            network_from_method,
            training_image_size,
            training_manifest,
        )

        method, data, checkpoint = load_trained(path)
        network = network_from_method(method, heads)
        size = image_size or training_image_size(data, training_manifest(data))
        meta = bundle_meta(method, network, data, size, checkpoint)
        return cls(network, meta, detector=detector, device=device, image_size=size)

    @classmethod
    def from_bundle(cls, folder: str | Path, *, detector: FaceDetector | None = None,
                    device: str = "cpu", image_size: int | None = None) -> Recognizer:
        """From a bundle folder written by ``ufer export --format bundle`` (no Lightning,
        no training code)."""
        from ufer.inference.export import load_network

        network, meta = load_network(folder)
        return cls(network, meta, detector=detector, device=device, image_size=image_size)

    @property
    def detector(self) -> FaceDetector:
        """The face detector (MTCNN unless one was given), built on first use."""
        if self._detector is None:
            from ufer.inference.detect import MTCNNDetector

            self._detector = MTCNNDetector(device=str(self.device))
        return self._detector

    @property
    def columns(self) -> list[str]:
        """Result columns, in order."""
        extra = ["valence", "arousal"] if "valence_arousal" in self.network.outputs else []
        extra += self.au_names if "au_probs" in self.network.outputs else []
        extra += ["uncertainty"] if "uncertainty" in self.network.outputs else []
        return (SOURCE_COLUMNS + BOX_COLUMNS + LANDMARK_COLUMNS + ["label"] + self.class_names
                + extra)

    # ---------------------------------------------------------------- the network
    def classify(self, faces: Tensor) -> dict[str, np.ndarray]:
        """The network on aligned faces.

        Args:
            faces: uint8 (B, 3, S, S) RGB, S = ``image_size``.

        Returns:
            float32 arrays: ``logits`` (B, C), ``probs`` (B, C) (their softmax) and, where
            the model has them, ``valence_arousal`` (B, 2), ``au_probs`` (B, M),
            ``uncertainty`` (B,).
        """
        if faces.dtype != torch.uint8 or faces.ndim != 4 or faces.shape[1:] != (
                3, self.image_size, self.image_size):
            raise ValueError(f"classify wants uint8 faces (B, 3, {self.image_size}, "
                             f"{self.image_size}), got {faces.dtype} {tuple(faces.shape)}")
        out = self.network(preprocess(faces.to(self.device), self.mean, self.std))
        out["probs"] = out["logits"].float().softmax(dim=1)
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def face_inputs(self, image: np.ndarray, detect: bool) -> tuple[list[Face | None],
                                                                     list[Tensor]]:
        """(faces, network inputs uint8 (3, S, S)) of one RGB picture.

        With ``detect`` every face found is aligned to the template at the crop size,
        then resized to the input size as the training loader resizes; without, the
        whole picture is the face (face record None).
        """
        if not detect:
            return [None], [load_image_tensor(image, self.image_size)]
        faces = self.detector.detect(image)
        crops = [load_image_tensor(align(image, f.landmarks, self.crop_size, self.template),
                                   self.image_size) for f in faces]
        return list(faces), crops

    # ---------------------------------------------------------------- predictions
    def iter_results(self, items: Iterable[Picture], *, detect: bool = True,
                     batch_size: int = 32) -> Iterator[tuple[Picture, list[dict[str, Any]]]]:
        """(picture, its rows) for each picture, in order; faces of several pictures are
        classified together in batches of up to ``batch_size``."""
        pending: list[tuple[Picture, list[Face | None], list[Tensor]]] = []
        count = 0
        for picture in items:
            faces, crops = [], []
            if picture.image is not None:
                try:
                    faces, crops = self.face_inputs(picture.image, detect)
                except (RuntimeError, ValueError) as exc:  # one bad picture never stops a batch
                    picture = replace(picture, error=f"face detection failed ({exc})")
            pending.append((picture, faces, crops))
            count += len(crops)
            if count >= batch_size:
                yield from self._flush(pending, batch_size)
                pending, count = [], 0
        yield from self._flush(pending, batch_size)

    def _flush(self, pending: list[tuple[Picture, list[Face | None], list[Tensor]]],
               batch_size: int) -> Iterator[tuple[Picture, list[dict[str, Any]]]]:
        crops = [c for _, _, cs in pending for c in cs]
        outputs = [self.classify(torch.stack(crops[i:i + batch_size]))
                   for i in range(0, len(crops), batch_size)]
        merged = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]} if outputs \
            else {}
        start = 0
        for picture, faces, _ in pending:
            rows = [self._face_row(picture, k, face, {n: v[start + k] for n, v in merged.items()})
                    for k, face in enumerate(faces)]
            start += len(faces)
            yield picture, rows or [self._empty_row(picture)]

    def predict_dicts(self, images: Any, *, detect: bool = True, batch_size: int = 32,
                      every_s: float = 1.0, max_frames: int | None = None
                      ) -> list[dict[str, Any]]:
        """Rows (one dict per face, keys = ``columns``) for everything in ``images``.

        Args:
            images: paths (files, folders, videos), PIL images, numpy arrays (H, W[, C]) or
                (B, H, W, C), tensors (C, H, W) or (B, C, H, W), or a list of these.
            detect: find and align faces; False treats each picture as an aligned face.
            batch_size: faces per network call.
            every_s, max_frames: video frame sampling.
        """
        items = pictures(images, every_s, max_frames)
        return [row for _, rows in self.iter_results(items, detect=detect,
                                                     batch_size=batch_size) for row in rows]

    def predict(self, images: Any, *, detect: bool = True, batch_size: int = 32,
                every_s: float = 1.0, max_frames: int | None = None) -> pd.DataFrame:
        """:meth:`predict_dicts` as a DataFrame (:func:`results_frame`)."""
        rows = self.predict_dicts(images, detect=detect, batch_size=batch_size,
                                  every_s=every_s, max_frames=max_frames)
        return results_frame(rows, self.columns)

    def predict_emotions(self, face: Any, logits: bool = False) -> tuple[str, np.ndarray]:
        """hsemotion-style call on ONE aligned face crop (no detection).

        Returns (top class name, scores (C,)): probabilities by default, the raw logits
        with ``logits=True`` (hsemotion's ``predict_emotions`` defaults to logits).
        """
        crop = load_image_tensor(to_rgb(face), self.image_size)
        out = self.classify(crop[None])
        return self.class_names[int(np.argmax(out["probs"][0]))], \
            out["logits" if logits else "probs"][0]

    # ---------------------------------------------------------------- rows
    def _base_row(self, picture: Picture) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(self.columns)
        row.update({"input": picture.source, "frame": picture.frame, "time_s": picture.time_s})
        return row

    def _empty_row(self, picture: Picture) -> dict[str, Any]:
        row = self._base_row(picture)
        if picture.error is not None:
            row.update({"status": STATUS_ERROR, "error": picture.error})
        else:
            row.update({"status": STATUS_NO_FACE, "error": "no face detected"})
        return row

    def _face_row(self, picture: Picture, index: int, face: Face | None,
                  out: dict[str, np.ndarray]) -> dict[str, Any]:
        row = self._base_row(picture)
        row.update({"face": index, "status": STATUS_OK, "error": ""})
        if face is None:  # the whole picture
            height, width = picture.image.shape[:2]
            row.update(zip(BOX_COLUMNS, (0.0, 0.0, float(width), float(height), math.nan)))
            row.update(dict.fromkeys(LANDMARK_COLUMNS, math.nan))
        else:
            x1, y1, x2, y2 = (float(v) for v in face.box)
            row.update(zip(BOX_COLUMNS, (x1, y1, x2 - x1, y2 - y1, face.score)))
            row.update(zip(LANDMARK_COLUMNS, (float(v) for v in face.landmarks.reshape(-1))))
        probs = out["probs"]
        row["label"] = self.class_names[int(np.argmax(probs))]
        row.update(zip(self.class_names, (float(p) for p in probs)))
        if "valence_arousal" in out:
            row["valence"], row["arousal"] = (float(v) for v in out["valence_arousal"])
        if "au_probs" in out:
            row.update(zip(self.au_names, (float(p) for p in out["au_probs"])))
        if "uncertainty" in out:
            row["uncertainty"] = float(out["uncertainty"])
        return row
