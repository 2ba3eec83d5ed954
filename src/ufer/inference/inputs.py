"""What inference accepts, turned into RGB uint8 pictures: files, folders, videos (sampled
frames), PIL images, numpy arrays and torch tensors, single or batched.

Every input becomes one or more :class:`Picture` records. A file that cannot be read
becomes a Picture with ``error`` set (and no pixels), so that one bad file never stops a
batch. Inputs are never modified: pixels are always copied.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from ufer.data.transforms import load_image_tensor

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


@dataclass(frozen=True, eq=False)
class Picture:
    """One picture to analyse, or the reason it could not be read.

    Attributes:
        source: the file path, or ``<input K>`` (``<input K>[J]`` inside a batch) for
            in-memory inputs.
        image: uint8 (H, W, 3) RGB (a copy), or None when ``error`` is set.
        frame: video frame index (0-based), None for still images.
        time_s: video time of the frame in seconds, None for still images.
        error: why the input could not be read, None when it was.
    """

    source: str
    image: np.ndarray | None
    frame: int | None = None
    time_s: float | None = None
    error: str | None = None


def to_rgb(image: Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """One in-memory image -> a new uint8 (H, W, 3) RGB array.

    Args:
        image: a PIL image (any mode); a numpy array (H, W) grey, (H, W, 3) RGB or
            (H, W, 4) RGBA, uint8 or float in [0, 1]; a torch tensor (3, H, W) or (1, H, W),
            uint8 or float in [0, 1] (torch's channel-first layout).

    Raises:
        TypeError / ValueError: another type, shape, or a float image outside [0, 1].
    """
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"a tensor image must be (3, H, W) or (1, H, W), got "
                             f"{tuple(image.shape)}")
        image = image.detach().cpu().permute(1, 2, 0).numpy()
        image = image[..., 0] if image.shape[2] == 1 else image
    if isinstance(image, np.ndarray):
        image = _as_uint8(image)
    elif not isinstance(image, Image.Image):
        raise TypeError(f"cannot read an image from {type(image).__name__}")
    return load_image_tensor(image).permute(1, 2, 0).numpy()


def _as_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 arrays as they are; float arrays in [0, 1] scaled to 0..255 and rounded."""
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"image arrays must be uint8 or float in [0, 1], got {array.dtype}")
    if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1 or np.isnan(array).any()):
        raise ValueError("a float image must hold values in [0, 1]")
    return np.rint(array * 255).astype(np.uint8)


def read_image(path: Path) -> Picture:
    """A still image file as a Picture (``error`` set when it cannot be decoded)."""
    try:
        return Picture(str(path), load_image_tensor(path).permute(1, 2, 0).numpy())
    except FileNotFoundError:
        return Picture(str(path), None, error="file not found")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return Picture(str(path), None, error=f"cannot decode the image ({exc})")


def video_frames(path: Path, every_s: float = 1.0, max_frames: int | None = None
                 ) -> Iterator[Picture]:
    """Frames sampled from a video at t = 0, every_s, 2 every_s, ... (OpenCV).

    A frame is taken at the first frame index >= round(t * fps). When the file reports no
    frame rate, every frame counts as 1/25 s. A video that cannot be opened or holds no
    frame yields one Picture with ``error`` set.

    Args:
        path: video file.
        every_s: sampling interval in seconds (> 0).
        max_frames: stop after this many sampled frames; None = to the end.
    """
    if every_s <= 0:
        raise ValueError(f"the frame sampling interval must be > 0 s, got {every_s}")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            yield Picture(str(path), None, error="cannot open the video")
            return
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        index = taken = 0
        while max_frames is None or taken < max_frames:
            if not capture.grab():
                break
            if index >= round(taken * every_s * fps):
                ok, bgr = capture.retrieve()
                if ok:
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    yield Picture(str(path), rgb, frame=index, time_s=index / fps)
                    taken += 1
            index += 1
        if index == 0:
            yield Picture(str(path), None, error="the video holds no readable frame")
    finally:
        capture.release()


def folder_files(folder: Path) -> list[Path]:
    """Image and video files under ``folder`` (recursively, by suffix), sorted by path."""
    found = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if Path(name).suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                found.append(Path(dirpath) / name)
    return sorted(found)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files to read: each folder replaced by :func:`folder_files`, files kept as given."""
    out: list[Path] = []
    for path in map(Path, paths):
        out.extend(folder_files(path) if path.is_dir() else [path])
    return out


def read_file(path: Path, every_s: float = 1.0, max_frames: int | None = None
              ) -> Iterator[Picture]:
    """One file: a video's sampled frames (by suffix), else the still image."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        yield from video_frames(path, every_s, max_frames)
    else:
        yield read_image(path)


def pictures(images: Any, every_s: float = 1.0, max_frames: int | None = None
             ) -> Iterator[Picture]:
    """Every picture in ``images``, in order.

    Args:
        images: a path (file, folder or video), a PIL image, a numpy array (H, W[, C]) or a
            tensor (C, H, W); a batch as a 4-D array (B, H, W, C) / tensor (B, C, H, W); or a
            list / tuple of any of these.
        every_s, max_frames: video frame sampling (:func:`video_frames`).
    """
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    for k, item in enumerate(items):
        if isinstance(item, (str, Path)):
            for path in expand_paths([item]):
                yield from read_file(path, every_s, max_frames)
        elif isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 4:
            for j, one in enumerate(item):
                yield _in_memory(f"<input {k}>[{j}]", one)
        else:
            yield _in_memory(f"<input {k}>", item)


def _in_memory(name: str, image: Any) -> Picture:
    try:
        return Picture(name, to_rgb(image))
    except (TypeError, ValueError) as exc:
        return Picture(name, None, error=str(exc))
