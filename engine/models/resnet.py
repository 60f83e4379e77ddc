"""Hand-written ResNets for correspondence encoders (research spec §1).

`ResNet` reproduces torchvision's parameter names and shapes exactly (spec §1.1), so published
checkpoints (torchvision, CRW's `encoder.model.*`) load by key without renaming.  On top of the
stock network it has the three knobs correspondence methods turn (spec §1.2, §11a-3):

* per-stage strides: CRW sets layer3/layer4 to stride 1 to keep a stride-8 map; the stride sits on
  the block-0 3x3 conv (BasicBlock `conv1`, Bottleneck `conv2`, i.e. torchvision "v1.5") and on
  its 1x1 `downsample.0`;
* reflect padding on every conv that pads (CRW `--model-type scratch`); the max-pool is not a
  conv and keeps the -inf padding;
* an output layer: the layers after it are never built, so their parameters never exist (a CRW
  test-time encoder has no layer4 and no fc);
* the stem pool: torchvision's 3x3/2 max-pool, an average pool (STT's stride-4 test network,
  MMCV `pool_type='mean'`) or none (STT's stride-8 student, `pool_type='none'`, spec §9.2, §9.6).
  All three are parameter-free, so the key set does not depend on the choice.

`MastResNet18` is MAST's own ResNet-18 (spec §1.3); it shares nothing with torchvision's naming.
`LiirResNet18` is the same topology plus LIIR's learnable position embedding (spec §8.3).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

LAYERS = ("layer1", "layer2", "layer3", "layer4")
TORCHVISION_STRIDES = (1, 2, 2, 2)
STEM_POOLS = ("max", "avg", "none")


def _conv(cin: int, cout: int, k: int, stride: int = 1, padding_mode: str = "zeros") -> nn.Conv2d:
    pad = k // 2
    # Reflect only matters where there is padding; 1x1 convs stay plain so their repr is unchanged.
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False,
                     padding_mode=padding_mode if pad > 0 else "zeros")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, padding_mode: str = "zeros"):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv(cin, width, 3, stride, padding_mode)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(width, cout, 3, 1, padding_mode)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, padding_mode: str = "zeros"):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv(cin, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride, padding_mode)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, cout, 1)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


def _projection(cin: int, cout: int, stride: int) -> "nn.Sequential | None":
    # Same rule as torchvision, so the set of `downsample.*` keys matches for any stride choice.
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))


_DEPTHS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """torchvision-compatible ResNet trunk; `forward` returns the feature map of `out_layer`."""

    def __init__(self, arch: str = "resnet18", layer_strides: Sequence[int] = TORCHVISION_STRIDES,
                 reflect_padding: bool = False, out_layer: str = "layer4", keep_fc: bool = False,
                 num_classes: int = 1000, stem_pool: str = "max"):
        super().__init__()
        if arch not in _DEPTHS:
            raise ConfigError(None, f"unknown ResNet arch {arch!r} (known: {', '.join(_DEPTHS)})")
        layer_strides = tuple(int(s) for s in layer_strides)
        if len(layer_strides) != 4 or any(s not in (1, 2) for s in layer_strides):
            raise ConfigError(None, f"layer_strides must be 4 values in {{1, 2}}, got {layer_strides}")
        if out_layer not in LAYERS:
            raise ConfigError(None, f"out_layer must be one of {LAYERS}, got {out_layer!r}")
        if stem_pool not in STEM_POOLS:
            raise ConfigError(None, f"stem_pool must be one of {STEM_POOLS}, got {stem_pool!r}")
        if keep_fc and out_layer != "layer4":
            raise ConfigError(None, "fc needs layer4: keep_fc=True requires out_layer='layer4'")
        block, counts = _DEPTHS[arch]
        pm = "reflect" if reflect_padding else "zeros"
        self.arch, self.layer_strides, self.out_layer = arch, layer_strides, out_layer
        self.reflect_padding = bool(reflect_padding)

        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False, padding_mode=pm)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.stem_pool = stem_pool
        if stem_pool == "max":
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        elif stem_pool == "avg":
            # MMCV's AvgPool2d(3, 2, padding=1) with the default count_include_pad=True.
            self.avgpool_stem = nn.AvgPool2d(3, stride=2, padding=1)
        cin = 64
        n_layers = LAYERS.index(out_layer) + 1
        for li in range(n_layers):
            width = 64 * 2 ** li
            blocks = [block(cin, width, layer_strides[li], pm)]
            cin = width * block.expansion
            blocks += [block(cin, width, 1, pm) for _ in range(counts[li] - 1)]
            setattr(self, LAYERS[li], nn.Sequential(*blocks))
        self.out_channels = cin
        self.stride = (2 if stem_pool == "none" else 4) * math.prod(layer_strides[:n_layers])
        if keep_fc:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, num_classes)
        else:
            self.avgpool = self.fc = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # He init for convs and unit BN (torchvision's scheme), so a random trunk has sane activations.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return LAYERS[:LAYERS.index(self.out_layer) + 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.stem_pool == "max":
            x = self.maxpool(x)
        elif self.stem_pool == "avg":
            x = self.avgpool_stem(x)
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier output (only with keep_fc=True); used to sanity-check imported weights."""
        if self.fc is None:
            raise ConfigError(None, "this ResNet was built without fc")
        return self.fc(torch.flatten(self.avgpool(self.forward(x)), 1))


def resnet18(**kw) -> ResNet:
    return ResNet("resnet18", **kw)


def resnet34(**kw) -> ResNet:
    return ResNet("resnet34", **kw)


def resnet50(**kw) -> ResNet:
    return ResNet("resnet50", **kw)


# --------------------------------------------------------------------------------------------
# MAST (zlai0/MAST models/submodule.py ResNet18 + models/mast.py post_convolution), spec §1.3


class MastResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        # Indices 0,1,(2 = ReLU),3,4 are part of MAST's checkpoint key names (left.0/.1/.3/.4).
        self.left = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(cout))
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.shortcut = None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.left(x) + s)


class MastResNet18(nn.Module):
    """MAST's encoder: stride 4, no max-pool, layer4 keeps 256 channels, then a 3x3 conv to 64-d.

    Key names are MAST's `feature_extraction.*` with that prefix removed, plus `post_convolution.*`
    (so a MAST checkpoint loads after stripping `feature_extraction.`).
    """

    layer_strides = (1, 2, 1, 1)
    stride = 4
    out_channels = 64

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64),
                                   nn.ReLU(inplace=True))
        plan = [(64, 64, 1), (64, 128, 2), (128, 256, 1), (256, 256, 1)]
        for name, (cin, cout, s) in zip(LAYERS, plan):
            setattr(self, name, nn.Sequential(MastResidualBlock(cin, cout, s), MastResidualBlock(cout, cout, 1)))
        self.post_convolution = nn.Conv2d(256, 64, 3, padding=1, bias=True)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for name in LAYERS:
            x = getattr(self, name)(x)
        return self.post_convolution(x)


class LiirResNet18(MastResNet18):
    """LIIR's encoder (shasha521/LIIR_pytorch `ResNet_hr` + `post_convolution`, spec §8.3, §8.5).

    The MAST topology (its checkpoints use torchvision-style names; the importer renames them to
    ours) plus the learnable "1DAPE" position embedding `pos_embed1` [1, 64, P, P], resized with
    bicubic interpolation (align_corners=False, as `F.interpolate` defaults) to the conv1 output and
    added after conv1-bn-relu.  P is the training size / 2 (128 for 256x256 training, §11b-33), so
    any input size works.
    """

    def __init__(self, pos_embed: int = 128):
        super().__init__()
        self.pos_embed1 = nn.Parameter(torch.zeros(1, 64, int(pos_embed), int(pos_embed)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        pe = self.pos_embed1
        if pe.shape[-2:] != x.shape[-2:]:
            pe = F.interpolate(pe, size=x.shape[-2:], mode="bicubic", align_corners=False)
        x = x + pe.to(x.dtype)
        for name in LAYERS:
            x = getattr(self, name)(x)
        return self.post_convolution(x)
