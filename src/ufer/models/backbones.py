"""Backbones: every network comes from timm through ``build_backbone``.

A backbone maps images (B, 3, H, W) to pooled features ``f`` (B, D); ResNets and DenseNets
also expose their stages (``forward_until`` / ``forward_from``).
Pretrained weights are only ever read from a local file (``load_pretrained``).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import register_model
from timm.models.densenet import DenseNet
from timm.models.resnet import BasicBlock, ResNet
from torch import Tensor, nn

from ufer.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ufer.models import dlib_resnet  # registers dlib_face_resnet with timm

log = logging.getLogger(__name__)

# Prefixes that peers' checkpoints put in front of torchvision/timm names (shared/spec/peers.md §6).
STRIP_PREFIXES = ("module.", "_orig_mod.", "feat_net.", "base.", "backbone.", "model.")
# Heads that are never part of a backbone: classifiers, MS-Celeb identity layers, loss layers.
DROP_PREFIXES = ("fc.", "feature.", "loss_layer.", "classifier.", "head.", "last_linear.")
MIN_MATCHED = 0.95


@register_model
def fer_resnet_small(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 layout cut to one BasicBlock per stage, widths 32-256, 3x3 stride-2 stem.

    About 1.2 M parameters; the CPU benchmark backbone of ``shared/spec/synthetic.md``.
    At 48 px the map sizes are 24, 24, 12, 6, 3. ``pretrained`` is accepted for the timm
    factory contract; there are no published weights.
    """
    if pretrained:
        raise ValueError("fer_resnet_small has no pretrained weights; pass pretrained_path=None")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)  # timm factory bookkeeping; this model has no pretrained config
    model = ResNet(BasicBlock, layers=(1, 1, 1, 1), channels=(32, 64, 128, 256), stem_width=16,
                   stem_type="deep",
                   **kwargs)
    model.conv1 = nn.Conv2d(kwargs.get("in_chans", 3), 32, 3, stride=2, padding=1, bias=False)
    model.maxpool = nn.Identity()  # (the deep stem above only sets the stem width to 32)
    for info in model.feature_info[1:]:  # without the max-pool every stage is 2x larger
        info["reduction"] //= 2
    return model


class Backbone(nn.Module):
    """A timm model without classifier: ``forward`` gives pooled features (B, D).

    Stage API (ResNet and DenseNet families, stages numbered as timm's ``feature_info``:
    0 = stem, 1..4 = the four stages; POI crops the stage-3 map and runs stage 4 on the crops):
    ``stage_channels(s)``, ``forward_until(x, s)`` -> the stage-s map (B, C_s, h, w) and
    ``forward_from(map, s)`` -> the pooled feature (B, D), through the same modules (and
    parameter names) as ``forward``, so ``forward_from(forward_until(x, s), s) == forward(x)``.

    Attributes:
        name: the timm model name.
        num_features: D, the width of the pooled feature.
        normalization: (mean, std) per RGB channel the architecture expects (timm's
            pretrained config, ImageNet's when it has none).
    """

    def __init__(self, name: str, drop_rate: float = 0.0, **timm_kwargs: Any):
        super().__init__()
        self.name = name
        self.model = timm.create_model(name, pretrained=False, num_classes=0, drop_rate=drop_rate,
                                       **timm_kwargs)
        self.num_features: int = self.model.num_features
        cfg = getattr(self.model, "pretrained_cfg", None) or {}
        self.normalization = (tuple(cfg.get("mean", IMAGENET_MEAN)),
                              tuple(cfg.get("std", IMAGENET_STD)))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) normalised images -> f: (B, D)."""
        return self.model(x)

    # ----------------------------------------------------------------- stage API
    def _family(self) -> str:
        if isinstance(self.model, (ResNet, dlib_resnet.DlibFaceResNet)):
            return "resnet"
        if isinstance(self.model, DenseNet):
            return "densenet"
        raise ValueError(f"backbone {self.name} ({type(self.model).__name__}) has no stage API; "
                         "it is available for the ResNet and DenseNet families")

    def stage_channels(self, stage: int) -> int:
        """Channels C_s of the stage-``stage`` map."""
        self._family()
        return int(self.model.feature_info[stage]["num_chs"])

    def forward_until(self, x: Tensor, stage: int) -> Tensor:
        """x: (B, 3, H, W) -> the stage-``stage`` map (B, C_s, h, w), NCHW; later stages are
        not computed."""
        self._family()
        return self.model.forward_intermediates(x, indices=[stage], intermediates_only=True,
                                                stop_early=True)[0]

    def forward_from(self, feat: Tensor, stage: int) -> Tensor:
        """A stage-``stage`` map (B, C_s, h, w) -> the pooled feature (B, D), running the
        stages after ``stage`` and the global pooling of ``forward``."""
        model = self.model
        if self._family() == "resnet":
            if stage == 0:
                feat = model.maxpool(feat)
            for layer in [model.layer1, model.layer2, model.layer3, model.layer4][stage:]:
                feat = layer(feat)
        else:
            for layer in model.features[model.feature_ends[stage] + 1:]:
                feat = layer(feat)
        return model.forward_head(feat, pre_logits=True)


@contextmanager
def weights_follow() -> Iterator[None]:
    """Inside, building a backbone without ``pretrained_path`` does not log "training from
    scratch": the network is being rebuilt to receive saved weights (checkpoints, bundles)."""
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def build_backbone(name: str, pretrained_path: str | Path | None = None,
                   drop_rate: float = 0.0, pretrained: bool = False) -> Backbone:
    """Build a timm backbone by name, optionally loading local pretrained weights.

    Args:
        name: a timm model name (``resnet18``, ``resnet50``, ``densenet121``,
            ``swin_small_patch4_window7_224``, ``fer_resnet_small``, ``test_resnet``, ...).
        pretrained_path: a local checkpoint (see ``load_pretrained``). None trains from
            scratch and says so in the log; nothing is ever downloaded.
        drop_rate: dropout before the (absent) classifier, passed to timm.
        pretrained: ask for pretrained weights; requires ``pretrained_path`` (hubs are
            never contacted, so there is nothing to fall back to).
    """
    if pretrained and pretrained_path is None:
        raise ValueError(f"pretrained weights for {name} must come from a local file: pass "
                         "pretrained_path=/path/to/weights (.pth/.pth.tar/.pt/.safetensors), "
                         "e.g. an MS-Celeb ResNet-18 such as resnet18_msceleb.pth; ufer never "
                         "downloads weights")
    if name not in timm.list_models() and not timm.is_model(name):
        raise ValueError(f"unknown backbone {name!r}; see timm.list_models()")
    backbone = Backbone(name, drop_rate=drop_rate)
    if pretrained_path is None:
        log.info("backbone %s: no pretrained_path given, training from scratch "
                 "(pass model.pretrained_path=/path/to/weights to start from a checkpoint)", name)
    else:
        load_pretrained(backbone, pretrained_path)
    return backbone


def clean_state_dict(raw: dict) -> dict[str, Tensor]:
    """Unwrap ``state_dict``/``model``/``model_state_dict``, strip wrapper prefixes, drop heads."""
    for key in ("state_dict", "model_state_dict", "model", "state_dict_ema"):
        if isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    cleaned: dict[str, Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, Tensor):
            continue
        changed = True
        while changed:
            changed = False
            for prefix in STRIP_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        if not key.startswith(DROP_PREFIXES):
            cleaned[key] = value
    return cleaned


def read_checkpoint_file(path: str | Path) -> dict:
    """Read a ``.safetensors`` or torch file with ``weights_only=True`` (no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign pickles
        raise ValueError(f"{path}: cannot be read as a weights-only checkpoint ({err}); "
                         "convert it to a plain state dict or .safetensors") from err


def load_pretrained(backbone: Backbone, path: str | Path) -> dict[str, int]:
    """Load a local checkpoint into ``backbone`` and report what matched.

    Accepts MS-Celeb ResNet-18 files (``ijba_res18_naive.pth.tar``, ``resnet18_msceleb.pth``),
    DMUE's ``mv_epoch_17.pt``, timm/torchvision state dicts and ``.safetensors``.

    Returns:
        ``{"matched": n, "missing": n, "unexpected": n, "shape_mismatch": n}``.

    Raises:
        ValueError: fewer than 95 % of the backbone's tensors matched by name and shape.
    """
    source = clean_state_dict(read_checkpoint_file(path))
    target = backbone.model.state_dict()
    matched = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    mismatch = [k for k, v in source.items() if k in target and target[k].shape != v.shape]
    report = {"matched": len(matched), "missing": len(target) - len(matched),
              "unexpected": len(set(source) - set(target)), "shape_mismatch": len(mismatch)}
    share = len(matched) / max(len(target), 1)
    if share < MIN_MATCHED:
        example = sorted(set(target) - set(matched))[:5]
        raise ValueError(
            f"{path}: only {len(matched)}/{len(target)} ({share:.0%}) backbone tensors of "
            f"{backbone.name} matched (need {MIN_MATCHED:.0%}); missing e.g. {example}; "
            f"shape mismatches: {mismatch[:5]}. Is this checkpoint for another architecture?")
    backbone.model.load_state_dict(matched, strict=False)
    log.info("backbone %s: loaded %s (%d matched, %d missing, %d unexpected)", backbone.name,
             path, report["matched"], report["missing"], report["unexpected"])
    return report
