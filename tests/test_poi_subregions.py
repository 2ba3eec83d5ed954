"""POI's subregions (models/subregions.py): crops, flips, AU nets, PIN outputs, UEM."""
import pytest
import torch
from conftest import TINY_BACKBONE
from torch import nn

from ufer.data.au_prior import EYE_AUS, PRIOR_AUS
from ufer.models.backbones import build_backbone
from ufer.models.net import FERNet
from ufer.models.subregions import (
    AUNets,
    GroupedLinear,
    PriorBranch,
    PriorInferenceNetwork,
    corner_crops,
    crop_size,
    crop_uncertainty,
    eval_mode,
    stages_after,
)


@pytest.mark.parametrize(("size", "frac", "k"), [(14, 9 / 14, 9), (14, 7 / 14, 7), (14, 11 / 14, 11),
                                                 (6, 9 / 14, 4), (7, 9 / 14, 5), (2, 9 / 14, 1),
                                                 (1, 0.1, 1), (4, 1.0, 4)])
def test_poi_crop_size_follows_the_fraction_with_a_floor_of_one(size, frac, k):
    assert crop_size(size, frac) == k


def test_poi_crop_size_rejects_fractions_outside_0_1():
    with pytest.raises(ValueError, match="crop_frac"):
        crop_size(14, 0.0)


def test_poi_corner_crops_on_a_hand_made_map():
    x = torch.arange(16.0).view(1, 1, 4, 4)  # x[i, j] = 4 i + j
    crops = corner_crops(x, 0.5)
    assert crops.shape == (4, 1, 1, 2, 2)
    assert crops[0, 0, 0].tolist() == [[0, 1], [4, 5]]  # top left
    assert crops[1, 0, 0].tolist() == [[3, 2], [7, 6]]  # top right, flipped
    assert crops[2, 0, 0].tolist() == [[8, 9], [12, 13]]  # bottom left
    assert crops[3, 0, 0].tolist() == [[11, 10], [15, 14]]  # bottom right, flipped


def test_poi_corner_crops_k9_on_14x14_overlap_and_channels():
    x = torch.arange(14 * 14.0).view(1, 1, 14, 14).repeat(2, 3, 1, 1)
    x[:, 1] *= -1  # channels stay apart
    crops = corner_crops(x, 9 / 14)
    assert crops.shape == (4, 2, 3, 9, 9)
    tl, tr, bl, br = crops[:, 0, 0]
    assert tl[0, 0] == 0 and tl[8, 8] == 8 * 14 + 8
    assert tr[0, 0] == 13 and tr[0, 8] == 5 and tr[8, 0] == 8 * 14 + 13  # columns 13..5
    assert bl[0, 0] == 5 * 14 and bl[8, 8] == 13 * 14 + 8  # rows 5..13
    assert br[0, 0] == 5 * 14 + 13 and br[8, 8] == 13 * 14 + 5
    assert torch.equal(crops[:, :, 1], -crops[:, :, 0])


def test_poi_eval_mode_restores_each_submodule():
    net = nn.Sequential(nn.BatchNorm1d(2), nn.BatchNorm1d(2))
    net.train()
    net[1].eval()  # a submodule deliberately frozen stays frozen
    before = net[0].running_mean.clone()
    with eval_mode(net):
        assert not net[0].training
        net(torch.randn(4, 2))
    assert net[0].training and not net[1].training
    assert torch.equal(net[0].running_mean, before)  # no running-statistics update


def test_poi_grouped_linear_equals_separate_linear_layers():
    torch.manual_seed(0)
    layer = GroupedLinear(3, 5, 2)
    x = torch.randn(4, 3, 5)
    separate = torch.stack([x[:, g] @ layer.weight[g] + layer.bias[g] for g in range(3)], dim=1)
    assert torch.allclose(layer(x), separate, atol=1e-6)


def test_poi_au_nets_scalar_importance_weight_scales_each_au_feature():
    torch.manual_seed(0)
    nets = AUNets(8, num_aus=2, au_dim=4, embed_dim=3, gate="scalar")
    h = torch.randn(5, 8)
    e, logits = nets(h)
    assert e.shape == (5, 2, 3) and logits.shape == (5, 2)
    a = nets.decompose(h).view(5, 2, 4)
    s = torch.sigmoid((a * nets.importance.weight[:, :, 0]).sum(2) + nets.importance.bias[:, 0])
    expected = torch.einsum("nak,ake->nae", s.unsqueeze(2) * a, nets.reduce.weight) \
        + nets.reduce.bias
    assert torch.allclose(e, expected, atol=1e-6)
    assert nets.importance.weight.shape == (2, 4, 1)
    assert AUNets(8, 2, 4, 3, gate="vector").importance.weight.shape == (2, 4, 4)


def test_poi_prior_branch_copies_the_last_stage_with_its_own_parameters():
    backbone = build_backbone("resnet18")
    stage = stages_after(backbone, 3)
    assert torch.equal(stage[0][0].conv1.weight, backbone.model.layer4[0].conv1.weight)
    assert stage[0][0].conv1.weight.data_ptr() != backbone.model.layer4[0].conv1.weight.data_ptr()
    x = torch.randn(2, 256, 9, 9)
    assert stage(x).shape == (2, 512, 5, 5)  # 256 -> 512, stride 2: k = 9 gives 5 x 5
    dense = build_backbone("densenet121")
    assert stages_after(dense, 3)(torch.randn(1, 1024, 9, 9)).shape[1] == dense.num_features
    single = PriorBranch(backbone, "conv3x3")  # the literal reading: one conv, stride 2
    assert single(x).shape == (2, 512) and single.stage[0].stride == (2, 2)
    with pytest.raises(ValueError, match="prior_stage"):
        PriorBranch(backbone, "conv5x5")


@pytest.mark.parametrize("classifier", ["branch", "subregion"])
def test_poi_pin_outputs_gate_sums_to_one_and_au_layout(classifier):
    torch.manual_seed(0)
    backbone = build_backbone(TINY_BACKBONE)
    pin = PriorInferenceNetwork(backbone, num_classes=5, classifier=classifier)
    crops = corner_crops(backbone.forward_until(torch.randn(3, 3, 64, 64), 3), 9 / 14)
    out = pin(crops)
    assert out["logits"].shape == (3, 4, 5) and out["au_logits"].shape == (3, 4, len(PRIOR_AUS))
    assert torch.allclose(out["gate"].sum(1), torch.ones(3))
    assert (out["gate"] > 0).all()
    eye = torch.tensor([a in EYE_AUS for a in PRIOR_AUS])
    assert (out["au_logits"][:, :2, ~eye] == 0).all() and (out["au_logits"][:, 2:, eye] == 0).all()
    assert (out["au_logits"][:, :2, eye] != 0).all() and (out["au_logits"][:, 2:, ~eye] != 0).all()
    assert pin.au_mask.tolist() == [eye.tolist()] * 2 + [(~eye).tolist()] * 2
    assert len(pin.classifiers) == (2 if classifier == "branch" else 4)
    assert PriorInferenceNetwork(backbone, 5, gate=False)(crops).keys() == {"logits", "au_logits"}


def test_poi_pin_shares_a_branch_between_the_left_and_the_flipped_right_crop():
    torch.manual_seed(0)
    backbone = build_backbone(TINY_BACKBONE)
    pin = PriorInferenceNetwork(backbone, num_classes=5).eval()
    crop = torch.randn(1, 1, backbone.stage_channels(3), 3, 3)
    out = pin(torch.cat([crop, crop, crop, crop]))  # the same crop in every position
    assert torch.allclose(out["logits"][0, 0], out["logits"][0, 1])  # P1 twice
    assert torch.allclose(out["logits"][0, 2], out["logits"][0, 3])  # P2 twice
    assert not torch.allclose(out["logits"][0, 0], out["logits"][0, 2])  # P1 != P2


def test_poi_crop_uncertainty_uses_only_the_fernet_and_lies_in_0_1():
    torch.manual_seed(0)
    net = FERNet(TINY_BACKBONE, num_classes=4).eval()
    x = torch.randn(5, 3, 64, 64)
    u = crop_uncertainty(net, x, 9 / 14)
    assert u.shape == (5,) and ((u >= 0) & (u <= 1)).all()
    with torch.no_grad():
        net.classifier.weight.zero_()  # every crop predicts the bias' distribution ...
    assert torch.allclose(crop_uncertainty(net, x, 9 / 14), torch.zeros(5), atol=1e-6)  # ... U = 0
