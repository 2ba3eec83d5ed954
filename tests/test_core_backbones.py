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


@pytest.mark.parametrize("name", ["fer_resnet_small", "test_resnet"])
def test_cnn_map_is_nchw_and_pools_to_features(name):
    backbone = build_backbone(name).eval()
    x = torch.randn(2, 3, 48, 48)
    fmap, pooled = backbone.forward_map(x)
    assert fmap.shape[:2] == (2, backbone.num_features) and fmap.dim() == 4
    assert torch.allclose(pooled, backbone(x), atol=1e-6)
    assert torch.allclose(pooled, fmap.mean(dim=(2, 3)), atol=1e-5)


def test_swin_nhwc_map_is_converted_to_nchw():
    # a two-stage, 16-wide Swin: the real class, tiny enough for a CPU test
    backbone = Backbone("swin_tiny_patch4_window7_224", embed_dim=16, depths=(1, 1),
                        num_heads=(1, 2), img_size=56, window_size=7)
    assert backbone.nhwc
    fmap, pooled = backbone.eval().forward_map(torch.randn(2, 3, 56, 56))
    assert fmap.shape == (2, backbone.num_features, 7, 7)
    assert torch.allclose(pooled, fmap.mean(dim=(2, 3)), atol=1e-5)


def test_fer_resnet_small_size():
    n = sum(p.numel() for p in build_backbone("fer_resnet_small").parameters())
    assert 1.1e6 < n < 1.3e6
