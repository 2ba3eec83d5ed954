"""dlib's metric-learned face-recognition ResNet as a timm model (``dlib_face_resnet``).

The network of dlib's ``dlib_face_recognition_resnet_model_v1`` (trained by dlib on about
3 M faces, weights CC0) in the layout that ``@vladmandic/face-api`` ships as
``face_recognition_model``: 150x150 RGB in, 128-D descriptor out, 5,614,592 parameters.
No BatchNorm: every convolution (with bias) is followed by a learned per-channel affine
``scale`` layer. Stride-2 convolutions and pools use no padding ("valid"); the residual
"down" blocks add a 2x2 average-pooled, zero-channel-padded shortcut, and when the
strided branch comes out one pixel smaller than the pooled shortcut it is zero-padded at
the bottom/right, as face-api does.

Map sizes at 150 px: stem conv 72, max-pool 35, layer1 35, layer2 17, layer3 8, layer4 2.

ufer's pooled feature is the 256-D global average before dlib's 128-D projection (``fc``):
the projection is linear, so it carries nothing the 256-D feature lacks, and it was
trained to make descriptors of one person invariant to expression, which is what an
expression classifier must not throw away. ``num_classes=128`` (the default) keeps that
projection as the head and gives face-api's descriptor; ``num_classes=0`` (what ufer's
``Backbone`` asks for) drops it.

Input: ``(x - mean) / std`` of images in [0, 1] with the ``pretrained_cfg`` mean/std below
equals face-api's ``(pixel - [122.782, 117.001, 104.298]) / 255`` on 0-255 pixels.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

__all__ = ["DlibFaceResNet", "dlib_face_resnet"]

FACEAPI_MEAN_RGB = (122.782, 117.001, 104.298)  # face-api subtracts these from 0-255 pixels
DESCRIPTOR_DIM = 128
MIN_INPUT_SIZE = 103  # smallest side for which every strided 3x3 conv still has 3x3 input


class ScaleConv(nn.Module):
    """Conv2d (with bias) -> per-channel affine ``scale`` -> optional ReLU.

    ``stride=2`` convolutions use no padding; ``stride=1`` ones pad ``kernel // 2`` ("same").
    """

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 3, stride: int = 1,
                 relu: bool = True):
        super().__init__()
        padding = 0 if stride > 1 else kernel // 2
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride=stride, padding=padding)
        self.scale = ChannelAffine(out_chs)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, H, W) -> (B, C_out, H', W')."""
        x = self.scale(self.conv(x))
        return F.relu(x) if self.relu else x


class ChannelAffine(nn.Module):
    """dlib's ``affine`` (face-api's ``scale``) layer: ``x * weight[c] + bias[c]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ResidualBlock(nn.Module):
    """Two 3x3 ScaleConvs plus identity (``down=False``) or pooled shortcut (``down=True``).

    The down shortcut is a 2x2/2 average pool whose channels are doubled with zeros when
    ``out_chs = 2 * in_chs``; the strided branch is zero-padded bottom/right to its size.
    """

    def __init__(self, in_chs: int, out_chs: int, down: bool = False):
        super().__init__()
        if not down and in_chs != out_chs:
            raise ValueError("an identity block keeps its width")
        if down and out_chs not in (in_chs, 2 * in_chs):
            raise ValueError("a down block keeps or doubles its width")
        self.down = down
        self.conv1 = ScaleConv(in_chs, out_chs, stride=2 if down else 1)
        self.conv2 = ScaleConv(out_chs, out_chs, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, H, W) -> (B, C_out, H, W), or (B, C_out, H // 2, W // 2) when down."""
        out = self.conv2(self.conv1(x))
        shortcut = x
        if self.down:
            shortcut = F.avg_pool2d(x, 2)
            extra = out.shape[1] - shortcut.shape[1]
            dh, dw = shortcut.shape[2] - out.shape[2], shortcut.shape[3] - out.shape[3]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, extra))
            out = F.pad(out, (0, dw, 0, dh))
        return F.relu(out + shortcut)


def _stage(in_chs: int, out_chs: int, depth: int, down_first: bool,
           down_last: bool = False) -> nn.Sequential:
    """``depth`` identity blocks, led by a down block and/or closed by one."""
    blocks = [ResidualBlock(in_chs, out_chs, down=True)] if down_first else []
    blocks += [ResidualBlock(out_chs, out_chs) for _ in range(depth)]
    if down_last:
        blocks.append(ResidualBlock(out_chs, out_chs, down=True))
    return nn.Sequential(*blocks)


class DlibFaceResNet(nn.Module):
    """dlib's face-recognition ResNet (29 conv layers + linear projection, no BatchNorm).

    Args:
        num_classes: head width; 128 is dlib's descriptor projection (``fc``, no bias),
            0 removes the head (pooled 256-D features out), anything else is a new
            bias-free projection of that width.
        in_chans: input channels (3; the pretrained weights are RGB).
        drop_rate: dropout on the pooled feature before the head.
    """

    def __init__(self, num_classes: int = DESCRIPTOR_DIM, in_chans: int = 3,
                 drop_rate: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = 256
        self.drop_rate = drop_rate
        self.stem = ScaleConv(in_chans, 32, kernel=7, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2)
        self.layer1 = _stage(32, 32, 3, down_first=False)
        self.layer2 = _stage(32, 64, 3, down_first=True)
        self.layer3 = _stage(64, 128, 2, down_first=True)
        self.layer4 = _stage(128, 256, 2, down_first=True, down_last=True)
        self.feature_info = [
            {"num_chs": 32, "reduction": 2, "module": "stem"},
            {"num_chs": 32, "reduction": 4, "module": "layer1"},
            {"num_chs": 64, "reduction": 8, "module": "layer2"},
            {"num_chs": 128, "reduction": 16, "module": "layer3"},
            {"num_chs": 256, "reduction": 64, "module": "layer4"},
        ]
        self.fc: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head: a bias-free Linear(256, num_classes), or Identity for 0."""
        if global_pool not in (None, "avg"):
            raise ValueError("dlib_face_resnet only pools by average")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes, bias=False) if num_classes else \
            nn.Identity()

    def _check_size(self, x: Tensor) -> None:
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(f"dlib_face_resnet needs inputs of at least {MIN_INPUT_SIZE} px "
                             f"(it was trained at 150), got {tuple(x.shape[-2:])}")

    def forward_features(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) normalised, H, W >= 103 -> last map (B, 256, h, w) (2x2 at 150 px)."""
        self._check_size(x)
        x = self.maxpool(self.stem(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_intermediates(self, x: Tensor, indices: int | list[int] | None = None,
                              norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's intermediate-feature API over the ``feature_info`` stages 0-4.

        Stage 0 is the stem map before the max-pool (as in timm's ResNet), 1-4 are
        ``layer1``-``layer4``; ``indices`` is a list of stages (negative counts from the
        end), an int n for the last n, or None for all. ``norm`` is accepted for the API
        (there is no final norm).

        Returns:
            the selected NCHW maps, or (last map (B, 256, h, w), selected maps) unless
            ``intermediates_only``.
        """
        if output_fmt != "NCHW":
            raise ValueError("dlib_face_resnet only outputs NCHW maps")
        self._check_size(x)
        count = len(self.feature_info)
        if indices is None:
            take = list(range(count))
        elif isinstance(indices, int):
            take = list(range(count - indices, count))
        else:
            take = [i % count for i in indices]
        last = max(take)
        stages = [self.stem, nn.Sequential(self.maxpool, self.layer1), self.layer2,
                  self.layer3, self.layer4]
        maps = []
        for index, stage in enumerate(stages[:last + 1] if stop_early else stages):
            x = stage(x)
            if index in take:
                maps.append(x)
        return maps if intermediates_only else (x, maps)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """map (B, 256, h, w) -> pooled (B, 256) if ``pre_logits`` else head output (B, K)."""
        x = x.mean(dim=(2, 3))
        x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) normalised -> (B, num_classes), or (B, 256) with no head."""
        return self.forward_head(self.forward_features(x))


default_cfgs = generate_default_cfgs({
    "dlib_face_resnet": {
        "num_classes": DESCRIPTOR_DIM,
        "input_size": (3, 150, 150),
        "pool_size": (2, 2),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": tuple(v / 255.0 for v in FACEAPI_MEAN_RGB),
        "std": (1.0, 1.0, 1.0),
        "first_conv": "stem.conv",
        "classifier": "fc",
        "license": "cc0-1.0 (weights, dlib); face-api package MIT",
        "notes": ("no downloadable weights: `ufer weights fetch dlib-face --out DIR` converts "
                  "the copy in the npm package @vladmandic/face-api 1.7.15"),
    },
})


@register_model
def dlib_face_resnet(pretrained: bool = False, **kwargs: Any) -> DlibFaceResNet:
    """dlib's face-recognition ResNet (5.6 M parameters, 150x150 RGB, 128-D descriptor).

    ``pretrained=True`` is refused: weights only come from a local file, made once by
    ``ufer weights fetch dlib-face`` and loaded through ``pretrained_path``.
    """
    if pretrained:
        raise ValueError("dlib_face_resnet weights are never downloaded: run `ufer weights "
                         "fetch dlib-face --out DIR` once and pass pretrained_path="
                         "DIR/dlib_face_resnet.safetensors")
    return build_model_with_cfg(DlibFaceResNet, "dlib_face_resnet", pretrained=False, **kwargs)
