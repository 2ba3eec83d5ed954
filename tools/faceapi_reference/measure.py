"""The numbers in docs/pretrained.md: parameters, the tfjs reference gap, LFW distances, speed.

    .venv/bin/python tools/faceapi_reference/measure.py [--weights .cache/ufer/dlib_face/dlib_face_resnet.safetensors]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import ufer.models.dlib_resnet  # noqa: F401  (registers dlib_face_resnet)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from fixtures.dlib_photos import LFW_FACES, reference_photos

QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)


def prepare(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> normalised with the model's pretrained_cfg."""
    cfg = timm.get_pretrained_cfg("dlib_face_resnet")
    return (images - torch.tensor(cfg.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.std).view(1, 3, 1, 1)


def reference_gap(model: torch.nn.Module) -> dict[str, float]:
    """Max |ours - tfjs| per reference photo."""
    fixture = json.loads((ROOT / "tests/fixtures/dlib_faceapi_reference.json").read_text())
    photos = reference_photos()
    x = torch.from_numpy(np.stack(list(photos.values()))).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ours = model(prepare(x))
    return {name: float((ours[i] - torch.tensor(fixture["photos"][name]["descriptor"])).abs().max())
            for i, name in enumerate(photos)}


def lfw_distances(model: torch.nn.Module) -> dict[str, list[float]]:
    """Quantiles of the distances: each view vs its original, and originals pairwise."""
    from skimage import data

    faces = torch.from_numpy(data.lfw_subset()[:LFW_FACES]).float()
    crops = {"original": faces, "flipped": faces.flip(-1),
             "cropped_tighter": faces[:, 1:24, 1:24], "cropped_shifted": faces[:, 0:24, 1:25]}
    with torch.no_grad():
        emb = {k: model(prepare(F.interpolate(g[:, None], size=(150, 150), mode="bilinear",
                                              align_corners=False).clamp(0, 1).expand(-1, 3, -1, -1)))
               for k, g in crops.items()}
    original = emb.pop("original")
    between = torch.cdist(original, original)
    pairs = torch.triu_indices(len(original), len(original), 1)
    nearest = (between + torch.eye(len(original)) * 1e9).min(dim=1).values
    out = {"different (4950 pairs)": between[pairs[0], pairs[1]]}
    for name, view in emb.items():
        d = (view - original).norm(dim=1)
        out[f"{name} (100; closer than every other face: {int((d < nearest).sum())}/100)"] = d
    return {k: [round(float(v.quantile(q)), 3) for q in QUANTILES] for k, v in out.items()}


def forward_ms(model: torch.nn.Module, batch: int, threads: int, repeats: int = 15) -> float:
    """Median milliseconds per image of a no-grad forward at this batch size and thread count."""
    torch.set_num_threads(threads)
    x = torch.randn(batch, 3, 150, 150)
    with torch.no_grad():
        model(x)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path,
                        default=ROOT / ".cache/ufer/dlib_face/dlib_face_resnet.safetensors")
    args = parser.parse_args()
    model = timm.create_model("dlib_face_resnet").eval()
    model.load_state_dict(load_file(args.weights))
    torch.set_num_threads(2)
    print("parameters", sum(p.numel() for p in model.parameters()),
          "without fc", sum(p.numel() for n, p in model.named_parameters() if n != "fc.weight"))
    gaps = reference_gap(model)
    print("max |ours - tfjs| per photo", {k: f"{v:.2e}" for k, v in gaps.items()})
    print("distance quantiles", QUANTILES)
    for name, values in lfw_distances(model).items():
        print(f"  {name}: {values}")
    for threads in (1, 2):
        for batch in (1, 32):
            print(f"forward {threads} thread(s), batch {batch}: "
                  f"{forward_ms(model, batch, threads):.1f} ms/image")


if __name__ == "__main__":
    main()
