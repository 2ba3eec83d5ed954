"""Facial subregions of a backbone's stage-3 map: POI's prior inference network and UEM.

POI (Liu et al., "Prior-based Objective Inference", arXiv 2411.13024, section III) crops the
four corners of the shared extractor's map (ResNet "Conv1~Conv4" = stages 0..3, 256 x 14 x 14
at 224 px), flips the right crops so they look like left ones (eq 2), and runs an eye
branch P1 on the top crops and a mouth branch P2 on the bottom crops, each followed by
AU nets with importance gates (eq 3) supervised by the emotion-AU prior (table I). The
equations were lost from the published text: the forms here are the reconstructions of
``shared/spec/peers.md`` section 1.3, not the authors' code.

``crop_uncertainty`` is the UEM (reconstructed eq 10) as a function of a ``FERNet`` alone:
the target network's own last stage, pooling and classifier applied to the same four crops.
Inference can report it while export stays the plain ``FERNet``.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from timm.models.densenet import DenseNet
from timm.models.resnet import ResNet
from torch import Tensor, nn

from ufer.data.au_prior import EYE_AUS, MOUTH_AUS, PRIOR_AUS
from ufer.losses.poi import uem_confidence, uem_variance
from ufer.models.backbones import Backbone
from ufer.models.net import FERNet

SHARED_STAGE = 3  # "Conv1~Conv4" (ResNet naming) = timm stages 0..3 (peers.md 1.2)
REGIONS = ("top_left", "top_right", "bottom_left", "bottom_right")  # r = 1..4 of eq 2
BRANCH_AUS = (EYE_AUS, MOUTH_AUS)  # P1 (eye) carries the top crops, P2 (mouth) the bottom ones
UEM_KIND = "poi_uem"  # how bundles and inference name crop_uncertainty


def crop_size(size: int, crop_frac: float) -> int:
    """Crop side k = round(crop_frac * size) (halves up), at least 1, at most ``size``.

    POI's k = 9 on the 14 x 14 map at 224 px is ``crop_frac = 9 / 14``; the same fraction
    gives k = 4 on bench-cpu's 6 x 6 map and 1 on a 2 x 2 map.
    """
    if not 0.0 < crop_frac <= 1.0:
        raise ValueError(f"crop_frac must lie in (0, 1], got {crop_frac}")
    return min(size, max(1, math.floor(crop_frac * size + 0.5)))


def corner_crops(feature_map: Tensor, crop_frac: float) -> Tensor:
    """The four corner crops of a map, the right ones flipped horizontally (eq 2).

    Args:
        feature_map: (N, C, H, W) the shared extractor's map X.
        crop_frac: crop side as a fraction of H (and of W): k_h = crop_size(H), k_w =
            crop_size(W).

    Returns:
        (R=4, N, C, k_h, k_w) in ``REGIONS`` order: X[:, :k, :k], flip_W(X[:, :k, W-k:]),
        X[:, H-k:, :k], flip_W(X[:, H-k:, W-k:]).
    """
    h, w = feature_map.shape[-2:]
    kh, kw = crop_size(h, crop_frac), crop_size(w, crop_frac)
    top, bottom = feature_map[..., :kh, :], feature_map[..., h - kh:, :]
    return torch.stack([top[..., :kw], top[..., w - kw:].flip(-1),
                        bottom[..., :kw], bottom[..., w - kw:].flip(-1)])


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` in eval mode (BatchNorm on running statistics, which stay unchanged)
    and restore every submodule's own mode afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def stages_after(backbone: Backbone, stage: int) -> nn.Module:
    """A copy (own parameters, starting from the backbone's current weights) of the modules
    that ``Backbone.forward_from(map, stage)`` runs before pooling.

    Args:
        backbone: a ResNet- or DenseNet-family ``Backbone``.
        stage: 1..3.

    Returns:
        A module mapping a stage-``stage`` map (N, C_s, h, w) to a map with
        ``backbone.num_features`` channels.
    """
    model = backbone.model
    if isinstance(model, ResNet) and 1 <= stage <= 3:
        layers = [model.layer1, model.layer2, model.layer3, model.layer4][stage:]
    elif isinstance(model, DenseNet) and 1 <= stage <= 3:
        layers = list(model.features[model.feature_ends[stage] + 1:])
    else:
        raise ValueError(f"POI's prior branches need a ResNet or DenseNet backbone and stage "
                         f"1..3; got {backbone.name} ({type(model).__name__}), stage {stage}")
    return copy.deepcopy(nn.Sequential(*layers))


class PriorBranch(nn.Module):
    """A prior branch P_b: "a convolutional layer and a GAP layer" giving a D-dim shallow
    feature h per crop (section III-C1).

    ``resnet_stage`` (default, [inferred]): a copy of the backbone's layers after the shared
    stage (ResNet-18: layer4, 256 -> 512, stride 2), so D = the backbone's feature width;
    ``conv3x3``: one 3x3 convolution C_s -> D with layer4's stride 2, + BatchNorm + ReLU (the
    minimal, literal reading; about 1/7 of layer4's multiply-adds on ResNet-18).
    """

    def __init__(self, backbone: Backbone, kind: str = "resnet_stage"):
        super().__init__()
        if kind == "resnet_stage":
            self.stage = stages_after(backbone, SHARED_STAGE)
        elif kind == "conv3x3":
            channels, width = backbone.stage_channels(SHARED_STAGE), backbone.num_features
            self.stage = nn.Sequential(nn.Conv2d(channels, width, 3, stride=2, padding=1,
                                                 bias=False),
                                       nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        else:
            raise ValueError(f"prior_stage must be 'resnet_stage' or 'conv3x3', got {kind!r}")

    def forward(self, crops: Tensor) -> Tensor:
        """crops: (n, C_s, k, k) -> h: (n, D)."""
        return self.stage(crops).mean(dim=(2, 3))


class GroupedLinear(nn.Module):
    """G independent linear layers applied to G slots: (n, G, in) -> (n, G, out).

    Equivalent to G ``nn.Linear`` layers (same initialisation), in one batched product.
    """

    def __init__(self, groups: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features)
                                   .uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("ngi,gio->ngo", x, self.weight) + self.bias


class AUNets(nn.Module):
    """The A AU nets of one prior branch (section III-C1), batched.

    AU net n: a_n = FC_n(h) in R^{d_a}; importance weight (eq 3) s_n = sigmoid(w_n . a_n + b_n)
    (``scalar``) or sigmoid(W_n a_n + b_n) elementwise (``vector``); a^_n = s_n * a_n;
    e_n = FC'_n(a^_n) in R^{d_e}; AU logit = v_n . e_n + c_n ("a one-dimensional FC", the
    sigmoid is in the loss).
    """

    def __init__(self, in_features: int, num_aus: int, au_dim: int = 256,
                 embed_dim: int = 64, gate: str = "scalar"):
        super().__init__()
        if gate not in ("scalar", "vector"):
            raise ValueError(f"au_gate must be 'scalar' or 'vector', got {gate!r}")
        self.num_aus, self.au_dim = num_aus, au_dim
        self.decompose = nn.Linear(in_features, num_aus * au_dim)  # FC_n for every n at once
        self.importance = GroupedLinear(num_aus, au_dim, 1 if gate == "scalar" else au_dim)
        self.reduce = GroupedLinear(num_aus, au_dim, embed_dim)
        self.occurrence = GroupedLinear(num_aus, embed_dim, 1)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """h: (n, D) -> (AU features e (n, A, d_e), AU logits (n, A))."""
        a = self.decompose(h).view(-1, self.num_aus, self.au_dim)
        e = self.reduce(torch.sigmoid(self.importance(a)) * a)
        return e, self.occurrence(e).squeeze(2)


def region_au_mask() -> Tensor:
    """(R, M) bool: subregion r has an AU net for column m of ``PRIOR_AUS`` (eye AUs on the
    top crops, mouth AUs on the bottom crops)."""
    eye = torch.tensor([au in EYE_AUS for au in PRIOR_AUS])
    return torch.stack([eye, eye, ~eye, ~eye])


class PriorInferenceNetwork(nn.Module):
    """POI's PIN (section III-C): prior branches, AU nets, subregion classifiers, gate.

    Args:
        backbone: the shared backbone (sizes, and the layers ``resnet_stage`` copies).
        num_classes: C.
        prior_stage: ``resnet_stage`` | ``conv3x3`` (``PriorBranch``).
        au_dim, embed_dim: d_a and d_e of the AU nets (lost from the paper; 256 and 64 ours).
        au_gate: ``scalar`` | ``vector`` importance weight (eq 3).
        classifier: ``branch`` = one classifier per prior branch, shared by its two crops;
            ``subregion`` = one per crop.
        gate: build the OIM's gate (FC + softmax over the four subregions' AU features).
    """

    def __init__(self, backbone: Backbone, num_classes: int, prior_stage: str = "resnet_stage",
                 au_dim: int = 256, embed_dim: int = 64, au_gate: str = "scalar",
                 classifier: str = "branch", gate: bool = True):
        super().__init__()
        if classifier not in ("branch", "subregion"):
            raise ValueError(f"subregion_classifier must be 'branch' or 'subregion', "
                             f"got {classifier!r}")
        width = backbone.num_features
        self.branches = nn.ModuleList([PriorBranch(backbone, prior_stage) for _ in BRANCH_AUS])
        self.au_nets = nn.ModuleList([AUNets(width, len(aus), au_dim, embed_dim, au_gate)
                                      for aus in BRANCH_AUS])
        widths = [len(aus) * embed_dim for aus in BRANCH_AUS]
        heads = len(REGIONS) // len(BRANCH_AUS) if classifier == "subregion" else 1
        self.classifiers = nn.ModuleList([nn.Linear(w, num_classes) for w in widths
                                          for _ in range(heads)])
        self.gate = nn.Linear(2 * sum(widths), len(REGIONS)) if gate else None
        self.register_buffer("au_mask", region_au_mask(), persistent=False)

    def occurrence_heads(self) -> list[nn.Module]:
        """The AU-probability layers: trained by the AU loss only."""
        return [nets.occurrence for nets in self.au_nets]

    def forward(self, crops: Tensor) -> dict[str, Tensor]:
        """crops: (R=4, N, C_s, k, k) from ``corner_crops`` ->

        ``logits`` (N, R, C) subregion logits o; ``au_logits`` (N, R, M) over ``PRIOR_AUS``
        (zero where ``au_mask`` is False); ``gate`` (N, R) rows summing to 1 (with a gate).
        """
        n = crops.shape[1]
        per_branch = len(REGIONS) // len(BRANCH_AUS)
        logits, au_logits, features = [], [], []
        offset = 0
        for b, (branch, au_nets) in enumerate(zip(self.branches, self.au_nets)):
            pair = crops[b * per_branch:(b + 1) * per_branch].flatten(0, 1)  # (2N, C_s, k, k)
            e, s = au_nets(branch(pair))
            flat = e.flatten(1).view(per_branch, n, -1)  # E^r, (2, N, A d_e)
            if len(self.classifiers) == len(BRANCH_AUS):
                logits.append(self.classifiers[b](flat))
            else:
                logits += [self.classifiers[b * per_branch + i](flat[i]).unsqueeze(0)
                           for i in range(per_branch)]
            pad = (offset, len(PRIOR_AUS) - offset - au_nets.num_aus)
            au_logits.append(F.pad(s, pad).view(per_branch, n, -1))
            features.append(flat)
            offset += au_nets.num_aus
        out = {"logits": torch.cat(logits).transpose(0, 1),
               "au_logits": torch.cat(au_logits).transpose(0, 1)}
        if self.gate is not None:
            concat = torch.cat([f for pair in features for f in pair], dim=1)  # [E^1; ..; E^4]
            out["gate"] = self.gate(concat).softmax(dim=1)
        return out


def trn_subregion_probs(net: FERNet, feature_map: Tensor, crop_frac: float) -> Tensor:
    """The target network's predictions on the four crops of its own stage-3 map: its last
    stage, pooling and classifier on each crop (the UEM's pi, reconstructed eq 10).

    Args:
        net: the FERNet (TRN).
        feature_map: (N, C_s, H, W) its stage-3 map.
        crop_frac: crop side as a fraction of the map.

    Returns:
        (N, R, C) softmax probabilities pi.
    """
    crops = corner_crops(feature_map, crop_frac)
    logits = net.classifier(net.backbone.forward_from(crops.flatten(0, 1), SHARED_STAGE))
    return logits.view(len(REGIONS), feature_map.shape[0], -1).transpose(0, 1).softmax(dim=2)


def map_uncertainty(net: FERNet, feature_map: Tensor, crop_frac: float) -> Tensor:
    """The UEM's score 1 - c = U / (1 - 1/R) in [0, 1] (reconstructed eq 10) of the target
    network's predictions on the crops of its stage-3 map (N, C_s, H, W) -> (N,) float32;
    higher = the subregions disagree more."""
    probs = trn_subregion_probs(net, feature_map, crop_frac)
    return 1.0 - uem_confidence(uem_variance(probs), len(REGIONS))


def crop_uncertainty(net: FERNet, x: Tensor, crop_frac: float) -> Tensor:
    """POI's UEM from the target network alone, for test images (the paper's table IV).

    Args:
        net: the FERNet (put it in eval mode for inference).
        x: (N, 3, H, W) normalised images.
        crop_frac: crop side as a fraction of the stage-3 map.

    Returns:
        (N,) 1 - c in [0, 1] (``map_uncertainty``).
    """
    return map_uncertainty(net, net.backbone.forward_until(x, SHARED_STAGE), crop_frac)
