"""The network inference runs: FERNet plus, optionally, the small heads a method trained
beside it, rebuilt from a bundle without Lightning or the methods' training code.

:class:`InferenceNetwork` maps normalised images (B, 3, S, S) to a dict of outputs:

- ``logits`` (B, C): always FERNet's; the heads never change it.
- ``valence_arousal`` (B, 2) in [-1, 1]: tanh of a linear head on the pooled feature
  (MTAC's VA branch).
- ``au_probs`` (B, M) in [0, 1]: sigmoid of the AU graph head's logits (MTAC's AU branch).
- ``uncertainty`` (B,) in [0, 1]: POI's UEM 1 - c from FERNet alone on four crops of its
  stage-3 map (needs no weights beyond FERNet's).

The same class serves checkpoints (built around a trained method's own modules) and
bundles (built from the bundle's JSON and safetensors), so both run one code path.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ufer.models.au_graph import AUGraphHead, ones_graph
from ufer.models.backbones import weights_follow
from ufer.models.net import FERNet
from ufer.models.subregions import UEM_KIND, crop_uncertainty

HEAD_PREFIX = "heads."  # safetensors keys of the heads; FERNet's keys are unprefixed


class InferenceNetwork(nn.Module):
    """FERNet with optional VA / AU heads and POI's uncertainty.

    Args:
        net: the trained FERNet.
        va: linear head (D -> 2) on the pooled feature, or None.
        au: AU graph head (D -> M logits), or None.
        uncertainty: ``{"kind": "poi_uem", "crop_frac": k}`` or None.
    """

    def __init__(self, net: FERNet, va: nn.Linear | None = None, au: AUGraphHead | None = None,
                 uncertainty: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.net = net
        self.heads = nn.ModuleDict({k: m for k, m in (("va", va), ("au", au)) if m is not None})
        if uncertainty is not None and uncertainty.get("kind") != UEM_KIND:
            raise ValueError(f"unknown uncertainty {uncertainty!r}; known: {UEM_KIND}")
        self.uncertainty = uncertainty

    @property
    def outputs(self) -> list[str]:
        """Names of the outputs ``forward`` returns."""
        names = ["logits"]
        names += ["valence_arousal"] if "va" in self.heads else []
        names += ["au_probs"] if "au" in self.heads else []
        return names + (["uncertainty"] if self.uncertainty else [])

    @torch.no_grad()
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x: normalised float (B, 3, S, S) -> the outputs listed in the module docstring."""
        features = self.net.backbone(x)
        out = {"logits": self.net.classifier(features)}
        if "va" in self.heads:
            out["valence_arousal"] = torch.tanh(self.heads["va"](features))
        if "au" in self.heads:
            out["au_probs"] = torch.sigmoid(self.heads["au"](features))
        if self.uncertainty:
            out["uncertainty"] = crop_uncertainty(self.net, x, self.uncertainty["crop_frac"])
        return out

    def bundle_state(self) -> dict[str, Tensor]:
        """Contiguous CPU tensors: FERNet's keys as they are, the heads' under ``heads.``."""
        state = {**self.net.state_dict(),
                 **{HEAD_PREFIX + k: v for k, v in self.heads.state_dict().items()}}
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def head_specs(self) -> dict[str, dict[str, Any]]:
        """What rebuilds the heads (``build_network``): sizes, no weights."""
        specs: dict[str, dict[str, Any]] = {}
        if "va" in self.heads:
            specs["va"] = {"kind": "linear_tanh", "in_features": self.heads["va"].in_features}
        if "au" in self.heads:
            au = self.heads["au"]
            specs["au"] = {"kind": "au_graph_sigmoid", "in_features": au.node_weight.shape[1],
                           "num_aus": au.node_weight.shape[0], "node_dim": au.out_weight.shape[1],
                           "layers": len(au.gcn), "negative_slope": au.gcn[0].negative_slope}
        return specs


def build_network(meta: dict[str, Any], state: dict[str, Tensor]) -> InferenceNetwork:
    """Rebuild an :class:`InferenceNetwork` from bundle metadata and weights (eval mode).

    Args:
        meta: the bundle JSON: ``backbone``, ``num_classes``, optional ``heads`` (from
            ``head_specs``) and ``uncertainty``.
        state: the bundle's tensors (``bundle_state``).

    Raises:
        ValueError: a head kind this version does not know, or weights that do not fit.
    """
    with weights_follow():
        net = FERNet(meta["backbone"], int(meta["num_classes"]))
    specs = meta.get("heads") or {}
    va = au = None
    if "va" in specs:
        _check_kind(specs["va"], "linear_tanh")
        va = nn.Linear(specs["va"]["in_features"], 2)
    if "au" in specs:
        spec = specs["au"]
        _check_kind(spec, "au_graph_sigmoid")
        au = AUGraphHead(spec["in_features"], ones_graph(spec["num_aus"]), spec["node_dim"],
                         spec["layers"], spec["negative_slope"])
    network = InferenceNetwork(net, va, au, meta.get("uncertainty"))
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)})
    network.heads.load_state_dict({k[len(HEAD_PREFIX):]: v for k, v in state.items()
                                   if k.startswith(HEAD_PREFIX)})
    return network.eval()


def _check_kind(spec: dict[str, Any], kind: str) -> None:
    if spec.get("kind") != kind:
        raise ValueError(f"unknown head kind {spec.get('kind')!r} (this ufer reads {kind!r})")
