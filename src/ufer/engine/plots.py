"""Figures written as PNG files (plain numpy + OpenCV, no display needed)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from torch import Tensor

_TITLE_H = 12  # title strip height in pixels
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def contact_sheet(images: list[np.ndarray], titles: list[str], out_png: str | Path,
                  ncols: int = 10, scale: int = 2) -> Path:
    """Tile images into a grid with a title above each tile and write it as PNG.

    Args:
        images: ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8 arrays; tiles take the largest
            size, smaller images are centred on a white tile.
        titles: one short text per image (cut to fit the tile width).
        out_png: destination file; parent folders are created.
        ncols: tiles per row.
        scale: integer magnification (nearest neighbour) of every image.

    Returns:
        The path written.
    """
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    rgb = [np.repeat(im[:, :, None], 3, 2) if im.ndim == 2 else im for im in images]
    th = max(im.shape[0] for im in rgb) * scale
    tw = max(im.shape[1] for im in rgb) * scale
    ncols = min(ncols, len(rgb))
    nrows = -(-len(rgb) // ncols)
    cell_h, cell_w = th + _TITLE_H, tw + 2
    sheet = np.full((nrows * cell_h, ncols * cell_w, 3), 255, np.uint8)
    for k, (im, title) in enumerate(zip(rgb, titles)):
        y, x = (k // ncols) * cell_h, (k % ncols) * cell_w
        big = cv2.resize(im, (im.shape[1] * scale, im.shape[0] * scale),
                         interpolation=cv2.INTER_NEAREST)
        oy, ox = y + _TITLE_H + (th - big.shape[0]) // 2, x + 1 + (tw - big.shape[1]) // 2
        sheet[oy:oy + big.shape[0], ox:ox + big.shape[1]] = big
        text = title
        while text and cv2.getTextSize(text, _FONT, 0.33, 1)[0][0] > tw:
            text = text[:-1]
        cv2.putText(sheet, text, (x + 2, y + _TITLE_H - 3), _FONT, 0.33, (0, 0, 0), 1,
                    cv2.LINE_AA)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_png), sheet[:, :, ::-1]):
        raise OSError(f"could not write {out_png}")
    return out_png


def plot_confusion(confusion: Tensor | np.ndarray, class_names: list[str], out_png: str | Path,
                   title: str = "", normalize: bool = True) -> Path:
    """Confusion matrix (rows true, columns predicted) as a PNG heat map with counts.

    ``normalize`` colours each row by its share (per-class recall); the text shows counts.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    size = 1.0 + 0.6 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (given label)")
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                color="white" if shares[i, j] > 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="row share" if normalize else "count")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
