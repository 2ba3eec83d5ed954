"""Image decoding/resizing and batched, seeded augmentation for aligned faces.

Decoding happens once per image (``load_image_tensor``, used by the dataset and by
inference); augmentation runs on whole batches of float tensors, on whatever device they
live on, drawing every random number from an explicit ``torch.Generator`` so that a run
is reproducible and resumable (save and restore ``generator.get_state()``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_ERASE_ASPECT = (0.3, 3.3)  # aspect-ratio range of the erased rectangle (as torchvision)


@dataclass
class AugmentConfig:
    """Augmentation for aligned faces. All zeros is the identity.

    Attributes:
        flip: probability of a horizontal flip.
        shift: maximum translation in pixels (at the image's own resolution), each axis;
            the border is replicated.
        brightness, contrast, saturation: jitter strength s; the factor is drawn from
            U[1 - s, 1 + s].
        erase: probability of erasing one rectangle (filled with the normalisation's mean
            colour, which is 0 after normalisation, like torchvision's RandomErasing(value=0)
            after Normalize).
        erase_area: range of the erased area as a fraction of the image.
    """

    flip: float = 0.5
    shift: int = 4
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    erase: float = 0.25
    erase_area: tuple[float, float] = (0.02, 0.2)


def load_image_tensor(
    source: str | Path | Image.Image | np.ndarray, image_size: int | None = None
) -> Tensor:
    """Decode an image to an RGB uint8 tensor, optionally resized to a square.

    Args:
        source: file path, PIL image, or array (H, W) grey / (H, W, 3) RGB / (H, W, 4) RGBA,
            uint8; 16-bit grey (PNG, or a uint16 array) is scaled to 8 bits.
        image_size: side S of the square output; shrinking uses area averaging, enlarging
            bilinear interpolation. None keeps the size.

    Returns:
        uint8 tensor (3, S, S) (or (3, H, W) without ``image_size``).

    Raises:
        FileNotFoundError: the file does not exist.
        OSError: the file cannot be decoded (PIL's ``UnidentifiedImageError`` and truncated files).
    """
    if isinstance(source, (str, Path)):
        with Image.open(source) as opened:
            image = to_rgb(opened)
    elif isinstance(source, np.ndarray):
        image = to_rgb(Image.fromarray(np.ascontiguousarray(source)))
    else:
        image = to_rgb(source)
    if image_size is not None and image.size != (image_size, image_size):
        shrinking = image_size < min(image.size)
        resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        image = image.resize((image_size, image_size), resample=resample)
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image``. Grey images of 16-bit samples (modes ``I;16*`` and
    ``I``, as PIL opens 16-bit PNGs) are scaled from [0, 65535] to [0, 255] first: PIL's
    own conversion clips them at 255, turning a face into a white square."""
    if image.mode.startswith("I"):
        wide = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        image = Image.fromarray(np.round(wide / 257.0).astype(np.uint8))
    return image.convert("RGB")


def to_float(images: Tensor) -> Tensor:
    """uint8 images (..., 3, H, W) in [0, 255] -> float32 in [0, 1] on the same device."""
    return images.to(torch.float32) / 255.0


def normalize(images: Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """Per-channel ``(x - mean) / std`` of float images (B, 3, H, W) or (3, H, W)."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device)[:, None, None]
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device)[:, None, None]
    return (images - mean_t) / std_t


def preprocess(images: Tensor, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """uint8 RGB images (B, 3, H, W) or (3, H, W) -> the network's float input: scaled to
    [0, 1], then ``(x - mean) / std`` per channel. The one preprocessing of evaluation,
    reports and inference; training inserts its augmentation between the two steps.
    ``mean``/``std`` are the method's (``FERMethod.normalization``, saved in checkpoints and
    bundles)."""
    return normalize(to_float(images), mean, std)


def augment_batch(images: Tensor, cfg: AugmentConfig, generator: torch.Generator,
                  fill: Sequence[float] = IMAGENET_MEAN) -> Tensor:
    """Randomly flip, shift, colour-jitter and erase a batch, vectorised over the batch.

    Args:
        images: float (B, 3, H, W) in [0, 1], any device.
        cfg: what to apply and how strongly.
        generator: the only source of randomness (any device; numbers are moved to the
            images' device). The same generator state gives the same output.
        fill: RGB colour in [0, 1] of erased rectangles (the normalisation's mean).

    Returns:
        A new float tensor (B, 3, H, W) in [0, 1]; ``images`` is not modified.
    """
    if not images.is_floating_point() or images.ndim != 4 or images.shape[1] != 3:
        raise TypeError(f"augment_batch wants float images (B, 3, H, W), got {images.dtype} "
                        f"{tuple(images.shape)}")
    out = images
    if cfg.flip > 0:
        out = _flip(out, cfg.flip, generator)
    if cfg.shift > 0:
        out = _shift(out, cfg.shift, generator)
    if cfg.brightness > 0:
        out = (out * _factor(out, cfg.brightness, generator)).clamp(0, 1)
    if cfg.contrast > 0:
        mean = _grey(out).mean(dim=(-2, -1), keepdim=True)
        out = _blend(out, mean, _factor(out, cfg.contrast, generator))
    if cfg.saturation > 0:
        out = _blend(out, _grey(out), _factor(out, cfg.saturation, generator))
    if cfg.erase > 0:
        out = _erase(out, cfg.erase, cfg.erase_area, generator, fill)
    return out


def _uniform(n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    """n draws from U[0, 1) as float32 on ``like``'s device."""
    draws = torch.rand(n, generator=generator, device=generator.device)
    return draws.to(device=like.device, dtype=torch.float32)


def _flip(images: Tensor, p: float, generator: torch.Generator) -> Tensor:
    flip = (_uniform(len(images), generator, images) < p)[:, None, None, None]
    return torch.where(flip, images.flip(-1), images)


def _shift(images: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by (dy, dx) in [-shift, shift]^2: replicate-pad, then crop."""
    b, c, h, w = images.shape
    padded = F.pad(images, (shift, shift, shift, shift), mode="replicate")
    offsets = (_uniform(2 * b, generator, images) * (2 * shift + 1)).long().clamp(max=2 * shift)
    dy, dx = offsets[:b], offsets[b:]
    dev = images.device
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=dev)[:, None, None, None]
    chan = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def _factor(images: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Per-sample factor from U[1 - strength, 1 + strength], shaped (B, 1, 1, 1)."""
    u = _uniform(len(images), generator, images).to(images.dtype)
    return (1 - strength + 2 * strength * u)[:, None, None, None]


def _grey(images: Tensor) -> Tensor:
    """ITU-R 601 luma (B, 1, H, W)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
    return (images * weights[:, None, None]).sum(dim=1, keepdim=True)


def _blend(images: Tensor, base: Tensor, factor: Tensor) -> Tensor:
    return (base + factor * (images - base)).clamp(0, 1)


def _erase(images: Tensor, p: float, area: tuple[float, float], generator: torch.Generator,
           fill: Sequence[float]) -> Tensor:
    """Erase one random rectangle per chosen sample (mask built by broadcasting)."""
    b, _, h, w = images.shape
    u = _uniform(5 * b, generator, images).view(5, b)
    chosen = u[0] < p
    frac = area[0] + (area[1] - area[0]) * u[1]
    log_lo, log_hi = math.log(_ERASE_ASPECT[0]), math.log(_ERASE_ASPECT[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[2])
    eh = torch.sqrt(frac * h * w * aspect).round().clamp(1, h)
    ew = torch.sqrt(frac * h * w / aspect).round().clamp(1, w)
    top = (u[3] * (h - eh + 1)).floor()
    left = (u[4] * (w - ew + 1)).floor()
    ys = torch.arange(h, device=images.device, dtype=torch.float32)[None, :, None]
    xs = torch.arange(w, device=images.device, dtype=torch.float32)[None, None, :]
    inside_y = (ys >= top[:, None, None]) & (ys < (top + eh)[:, None, None])
    inside_x = (xs >= left[:, None, None]) & (xs < (left + ew)[:, None, None])
    mask = (inside_y & inside_x & chosen[:, None, None])[:, None]  # (B, 1, H, W)
    colour = torch.tensor(fill, dtype=images.dtype, device=images.device)
    return torch.where(mask, colour[None, :, None, None], images)
