import pytest
import timm
import torch

from ufer.models.backbones import Backbone, build_backbone, load_pretrained


def _msceleb_style_checkpoint(path):
    """A checkpoint shaped like ijba_res18_naive.pth.tar: state_dict, module. prefix, heads."""
    reference = timm.create_model("resnet18", num_classes=0)
    state = {f"module.{k}": v.clone() + 1.0 for k, v in reference.state_dict().items()}
    state["module.feature.weight"] = torch.zeros(256, 512)
    state["module.fc.weight"] = torch.zeros(10, 256)
    torch.save({"state_dict": state, "epoch": 3}, path)
    return reference


def test_pretrained_msceleb_layout_loads_and_reports(tmp_path):
    path = tmp_path / "ijba_res18_naive.pth.tar"
    reference = _msceleb_style_checkpoint(path)
    backbone = build_backbone("resnet18")
    report = load_pretrained(backbone, path)
    assert report["matched"] == len(reference.state_dict())
    assert report["missing"] == 0
    w = backbone.model.conv1.weight
    assert torch.equal(w, reference.conv1.weight + 1.0)


def test_pretrained_from_other_architecture_is_refused(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(timm.create_model("resnet50", num_classes=0).state_dict(), path)
    with pytest.raises(ValueError, match=r"backbone tensors of resnet18 matched \(need 95%\)"):
        build_backbone("resnet18", pretrained_path=path)


def test_pretrained_without_file_says_how_to_pass_one(tmp_path):
    with pytest.raises(ValueError, match="pretrained_path=/path/to/weights"):
        build_backbone("resnet18", pretrained=True)
    with pytest.raises(FileNotFoundError, match="not found"):
        build_backbone("resnet18", pretrained_path=tmp_path / "missing.pth")


def test_unknown_backbone_names_itself():
    with pytest.raises(ValueError, match="unknown backbone 'resnet_nope'"):
        build_backbone("resnet_nope")


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "fer_resnet_small"])
def test_stage_api_splits_the_forward_pass(name):
    torch.manual_seed(0)
    backbone = build_backbone(name).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled = backbone(x)
        for stage in (1, 3):
            fmap = backbone.forward_until(x, stage)
            assert fmap.shape[:2] == (2, backbone.stage_channels(stage)) and fmap.dim() == 4
            assert torch.allclose(backbone.forward_from(fmap, stage), pooled, atol=1e-5)
    # stage 3 of a 64 px input: 4 x 4 for ResNet-18 / DenseNet-121 (reduction 16), 8 x 8 for
    # the small CPU ResNet (no max-pool: reduction 8)
    side = 64 // backbone.model.feature_info[3]["reduction"]
    assert backbone.forward_until(x, 3).shape[2:] == (side, side)
    assert side == (8 if name == "fer_resnet_small" else 4)


def test_stage_api_of_other_families_is_a_clear_error():
    # a two-stage, 16-wide Swin: the real class, tiny enough for a CPU test
    backbone = Backbone("swin_tiny_patch4_window7_224", embed_dim=16, depths=(1, 1),
                        num_heads=(1, 2), img_size=56, window_size=7)
    with pytest.raises(ValueError, match="no stage API; it is available for the ResNet"):
        backbone.forward_until(torch.randn(1, 3, 56, 56), 1)


def test_normalization_comes_from_the_architecture():
    assert build_backbone("resnet18").normalization == ((0.485, 0.456, 0.406),
                                                        (0.229, 0.224, 0.225))
    assert build_backbone("test_resnet").normalization == ((0.5,) * 3, (0.5,) * 3)
    assert build_backbone("fer_resnet_small").normalization[0] == (0.485, 0.456, 0.406)


def test_fer_resnet_small_size():
    n = sum(p.numel() for p in build_backbone("fer_resnet_small").parameters())
    assert 1.1e6 < n < 1.3e6


def test_dlib_face_resnet_is_a_backbone_with_its_own_normalization_and_stages():
    backbone = build_backbone("dlib_face_resnet").eval()
    mean, std = backbone.normalization
    assert std == (1.0, 1.0, 1.0) and abs(mean[0] - 122.782 / 255) < 1e-6
    x = torch.randn(1, 3, 150, 150)
    with torch.no_grad():
        pooled = backbone(x)
        fmap = backbone.forward_until(x, 3)
        assert torch.allclose(backbone.forward_from(fmap, 3), pooled, atol=1e-5)
