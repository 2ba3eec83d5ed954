"""dlib_face_resnet: architecture, timm contract and ufer Backbone wrapping (no weights)."""
import numpy as np
import pytest
import timm
import torch

import ufer.models.dlib_resnet as dlib  # registers dlib_face_resnet with timm
from ufer.data.transforms import normalize
from ufer.models.backbones import Backbone, build_backbone


def test_parameter_count_is_faceapis():
    model = timm.create_model("dlib_face_resnet")
    assert sum(p.numel() for p in model.parameters()) == 5_614_592  # face-api's manifest
    assert model.fc.weight.shape == (128, 256) and model.fc.bias is None
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_map_sizes_at_150_px():
    model = timm.create_model("dlib_face_resnet", features_only=True).eval()
    maps = model(torch.randn(1, 3, 150, 150))
    assert [tuple(m.shape[1:]) for m in maps] == [(32, 72, 72), (32, 35, 35), (64, 17, 17),
                                                  (128, 8, 8), (256, 2, 2)]


def test_backbone_pools_256d_trunk_feature():
    backbone = Backbone("dlib_face_resnet").eval()
    model = backbone.model
    x = torch.randn(2, 3, 150, 150)
    fmap = model.forward_features(x)
    pooled = backbone(x)
    assert backbone.num_features == 256 and fmap.shape == (2, 256, 2, 2)
    assert torch.allclose(pooled, model.forward_head(fmap, pre_logits=True), atol=1e-6)
    assert torch.allclose(pooled, fmap.mean(dim=(2, 3)), atol=1e-6)
    assert not any(k.startswith("fc.") for k in model.state_dict())
    assert model.pretrained_cfg["mean"] == timm.get_pretrained_cfg("dlib_face_resnet").mean


def test_intermediates_match_features_and_stop_early():
    model = timm.create_model("dlib_face_resnet", num_classes=0).eval()
    x = torch.randn(1, 3, 150, 150)
    last, maps = model.forward_intermediates(x)
    assert [m.shape[1] for m in maps] == [32, 32, 64, 128, 256]
    assert torch.equal(last, model.forward_features(x)) and torch.equal(maps[-1], last)
    (stage3,) = model.forward_intermediates(x, indices=[3], intermediates_only=True,
                                            stop_early=True)
    assert torch.equal(stage3, maps[3])
    assert torch.allclose(model.forward_head(model.layer4(stage3), pre_logits=True), model(x))


def test_build_backbone_finds_it_by_name():
    assert build_backbone("dlib_face_resnet").num_features == 256


def test_input_below_minimum_is_refused_by_name():
    model = timm.create_model("dlib_face_resnet").eval()
    assert model(torch.randn(1, 3, dlib.MIN_INPUT_SIZE, dlib.MIN_INPUT_SIZE)).shape == (1, 128)
    with pytest.raises(ValueError, match="at least 103 px"):
        model(torch.randn(1, 3, 102, 102))


def test_pretrained_download_is_refused_with_the_fetch_command():
    with pytest.raises(ValueError, match="ufer weights fetch dlib-face"):
        timm.create_model("dlib_face_resnet", pretrained=True)


def test_pretrained_cfg_normalisation_is_faceapis():
    """ufer's (x/255 - mean) / std equals face-api's (pixel - meanRgb) / 255."""
    cfg = timm.get_pretrained_cfg("dlib_face_resnet")
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 150, 150)))
    ours = normalize(pixels.float() / 255, cfg.mean, cfg.std)
    faceapi = (pixels.float() - torch.tensor(dlib.FACEAPI_MEAN_RGB).view(1, 3, 1, 1)) / 255
    assert torch.allclose(ours, faceapi, atol=1e-6)
    assert cfg.input_size == (3, 150, 150)


def test_down_block_pads_the_strided_branch_bottom_right():
    """At an even size the strided branch is one pixel short; its last row/column are zeros."""
    block = dlib.ResidualBlock(4, 8, down=True)
    with torch.no_grad():
        for layer in (block.conv1, block.conv2):
            layer.conv.weight.zero_()
            layer.conv.bias.zero_()
            layer.scale.weight.zero_()
        block.conv2.scale.bias.fill_(2.0)  # the branch outputs 2 everywhere it exists
    out = block(torch.zeros(1, 4, 8, 8))  # branch 3x3, pooled shortcut 4x4
    assert out.shape == (1, 8, 4, 4)
    assert torch.all(out[..., :3, :3] == 2.0)
    assert torch.all(out[..., 3, :] == 0.0) and torch.all(out[..., :, 3] == 0.0)


def test_down_block_shortcut_is_pooled_then_zero_padded_in_channels():
    block = dlib.ResidualBlock(2, 4, down=True)
    with torch.no_grad():
        block.conv2.scale.weight.zero_()
        block.conv2.scale.bias.zero_()  # branch contributes nothing
    x = torch.arange(2 * 6 * 6, dtype=torch.float32).view(1, 2, 6, 6)
    out = block(x)
    assert torch.equal(out[:, :2], torch.nn.functional.avg_pool2d(x, 2))
    assert torch.all(out[:, 2:] == 0.0)
