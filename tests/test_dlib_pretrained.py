"""The converted dlib weights on real photos: face-api's tfjs reference and same-vs-different.

The weights are made by `make test` (its `weights` step: `ufer weights fetch dlib-face
--out .cache/ufer/dlib_face`); UFER_DLIB_FACE_DIR points elsewhere.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from fixtures.dlib_photos import LFW_FACES, reference_photos, sha256_hex
from safetensors.torch import load_file

import ufer.models.dlib_resnet  # noqa: F401  (registers dlib_face_resnet)
from ufer.cli.main import main
from ufer.data.transforms import normalize
from ufer.models import convert_faceapi as conv
from ufer.models.backbones import build_backbone

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = Path(os.environ.get("UFER_DLIB_FACE_DIR", ROOT / ".cache" / "ufer" / "dlib_face"))
REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "dlib_faceapi_reference.json").read_text())
LFW_TESTED = 40  # faces 0-39 of lfw_subset: 40 originals + 120 variants, 780 different pairs


@pytest.fixture(scope="module")
def weights() -> Path:
    path = WEIGHTS_DIR / conv.WEIGHTS_FILE
    if not path.is_file():
        pytest.skip(f"{path} missing: run `make weights` (or `ufer weights fetch dlib-face "
                    f"--out {WEIGHTS_DIR}`)")
    return path


@pytest.fixture(scope="module")
def descriptor_net(weights):
    """The full network with dlib's 128-D projection: face-api's descriptor."""
    model = timm.create_model("dlib_face_resnet").eval()
    model.load_state_dict(load_file(weights))
    return model


def _prepare(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 or (N, 3, H, W) float in [0, 1] -> normalised (N, 3, H, W)."""
    cfg = timm.get_pretrained_cfg("dlib_face_resnet")
    if images.dtype == torch.uint8:
        images = images.permute(0, 3, 1, 2).float() / 255
    return normalize(images, cfg.mean, cfg.std)


def test_cache_matches_its_provenance(weights):
    assert conv.is_up_to_date(weights.parent)
    provenance = json.loads((weights.parent / conv.PROVENANCE_FILE).read_text())
    assert provenance["output"]["parameters"] == 5_614_592
    assert provenance["version"] == "1.7.15"


def test_descriptors_equal_faceapis_tfjs_reference(descriptor_net):
    photos = reference_photos()
    assert photos.keys() == REFERENCE["photos"].keys()
    for name, image in photos.items():
        assert sha256_hex(image) == REFERENCE["photos"][name]["input_sha256"], name
    with torch.no_grad():
        ours = descriptor_net(_prepare(torch.from_numpy(np.stack(list(photos.values())))))
    theirs = torch.tensor([REFERENCE["photos"][n]["descriptor"] for n in photos])
    assert (ours - theirs).abs().max().item() < 1e-4
    assert (ours[0] - theirs[0]).abs().max().item() < 1e-4  # the astronaut, named


def test_pretrained_path_loads_the_trunk_of_the_descriptor(weights, descriptor_net):
    backbone = build_backbone("dlib_face_resnet", pretrained_path=weights).eval()
    x = _prepare(torch.from_numpy(reference_photos()["astronaut"])[None])
    with torch.no_grad():
        pooled = backbone(x)
        descriptor = descriptor_net(x)
    assert pooled.shape == (1, 256)
    assert torch.allclose(pooled @ descriptor_net.fc.weight.T, descriptor, atol=1e-5)


def _lfw_views(count: int) -> dict[str, torch.Tensor]:
    """Original, mirrored and two re-cropped versions of the first ``count`` LFW faces,
    each bilinearly resized to (count, 3, 150, 150) in [0, 1]."""
    from skimage import data

    faces = torch.from_numpy(data.lfw_subset()[:min(count, LFW_FACES)]).float()
    crops = {"original": faces, "flipped": faces.flip(-1),
             "cropped_tighter": faces[:, 1:24, 1:24], "cropped_shifted": faces[:, 0:24, 1:25]}
    return {name: F.interpolate(g[:, None], size=(150, 150), mode="bilinear",
                                align_corners=False).clamp(0, 1).expand(-1, 3, -1, -1)
            for name, g in crops.items()}


def test_same_face_flipped_or_recropped_is_closer_than_other_faces(descriptor_net):
    with torch.no_grad():
        emb = {k: descriptor_net(_prepare(v)) for k, v in _lfw_views(LFW_TESTED).items()}
    original = emb.pop("original")
    between = torch.cdist(original, original)
    nearest_other = (between + torch.eye(len(original)) * 1e9).min(dim=1).values
    pairs = torch.triu_indices(len(original), len(original), 1)
    different = between[pairs[0], pairs[1]]
    same = torch.cat([(view - original).norm(dim=1) for view in emb.values()])
    for name, view in emb.items():
        assert torch.all((view - original).norm(dim=1) < nearest_other), name
    assert same.quantile(0.95) < different.quantile(0.05)
    assert same.median() < 0.6 < different.median()  # dlib's same-person threshold


def test_cli_fetch_on_the_cache_only_checks(weights, capsys):
    assert main(["weights", "fetch", "dlib-face", "--out", str(weights.parent)]) == 0
    assert "already there (sha256 checked)" in capsys.readouterr().out
