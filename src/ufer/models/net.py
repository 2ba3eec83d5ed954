"""FERNet: backbone + linear classifier — the only network inference and export ever see."""
from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from ufer.models.backbones import build_backbone


class FERNet(nn.Module):
    """Backbone + classifier. ``forward`` returns logits; ``features_and_logits`` also f.

    Every method wraps one FERNet; auxiliary heads live in the method, never here, so
    inference cost equals a plain classifier's by construction.
    """

    def __init__(self, backbone: str, num_classes: int,
                 pretrained_path: str | Path | None = None, drop_rate: float = 0.0):
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained_path, drop_rate)
        self.classifier = nn.Linear(self.backbone.num_features, num_classes)

    @property
    def num_features(self) -> int:
        return self.backbone.num_features

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) normalised -> logits (B, C)."""
        return self.classifier(self.backbone(x))

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, 3, H, W) -> (f (B, D), logits (B, C))."""
        f = self.backbone(x)
        return f, self.classifier(f)
