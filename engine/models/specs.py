"""Named model specs: how to build an encoder and which inference protocol its features are for.

A `ModelSpec` travels inside every checkpoint of ours (`model_spec`), so a checkpoint of any method
opens in the engine without conversion.  The registry holds the specs that published layouts and
the CLIs refer to by name.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError
from .resnet import LAYERS, MastResNet18, ResNet

ARCHS = ("resnet18", "resnet50", "mast18")
COLOURS = ("rgb", "lab")
PROTOCOLS = ("crw", "mast")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WIDTH = {"resnet18": 64, "resnet50": 256}   # layer1 output channels; doubles per layer


@dataclass(frozen=True)
class ModelSpec:
    name: str
    arch: str                               # "resnet18" | "resnet50" | "mast18"
    layer_strides: tuple                    # strides of layer1..layer4
    reflect_padding: bool
    out_layer: str                          # "layer1".."layer4"
    stride: int                             # effective output stride (checked against the arch)
    channels: int                           # output channels (checked against the arch)
    l2_normalize: bool                      # per-cell L2 over channels after the trunk
    colour: str                             # "rgb" | "lab"
    mean: tuple                             # per channel, in the units `colour` produces (rgb: [0,1])
    std: tuple
    protocol: str = "crw"                   # which propagation protocol the features are meant for
    temperature: float = 0.05               # default softmax temperature of that protocol
    description: str = ""

    def __post_init__(self):
        # Lists come back from JSON/YAML; keep the dataclass hashable and comparable.
        for f in ("layer_strides", "mean", "std"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        problems = self.problems()
        if problems:
            raise ConfigError(None, f"invalid model spec {self.name!r}: " + "; ".join(problems))

    def problems(self) -> list[str]:
        p = []
        if not isinstance(self.name, str) or not self.name:
            p.append("name must be a non-empty string")
        if self.arch not in ARCHS:
            p.append(f"arch must be one of {ARCHS}, got {self.arch!r}")
            return p
        if len(self.layer_strides) != 4 or any(s not in (1, 2) for s in self.layer_strides):
            p.append(f"layer_strides must be 4 values in {{1, 2}}, got {self.layer_strides}")
            return p
        if self.out_layer not in LAYERS:
            p.append(f"out_layer must be one of {LAYERS}, got {self.out_layer!r}")
            return p
        if self.arch == "mast18":
            if self.layer_strides != MastResNet18.layer_strides or self.out_layer != "layer4" or self.reflect_padding:
                p.append("mast18 is fixed: layer_strides (1, 2, 1, 1), out_layer 'layer4', zero padding")
            stride, channels = MastResNet18.stride, MastResNet18.out_channels
        else:
            n = LAYERS.index(self.out_layer) + 1
            stride = 4 * math.prod(self.layer_strides[:n])
            channels = _WIDTH[self.arch] * 2 ** (n - 1)
        if self.stride != stride:
            p.append(f"stride {self.stride} does not match the architecture (which gives {stride})")
        if self.channels != channels:
            p.append(f"channels {self.channels} does not match the architecture (which gives {channels})")
        for f in ("reflect_padding", "l2_normalize"):
            if not isinstance(getattr(self, f), bool):
                p.append(f"{f} must be true or false, got {getattr(self, f)!r}")
        if self.colour not in COLOURS:
            p.append(f"colour must be one of {COLOURS}, got {self.colour!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(float(s) <= 0 for s in self.std):
            p.append("mean and std must have 3 values, std > 0")
        if self.protocol not in PROTOCOLS:
            p.append(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not float(self.temperature) > 0:
            p.append("temperature must be > 0")
        return p

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # Plain lists/floats only: the dict goes into a weights_only checkpoint and into JSON.
        for f in ("layer_strides", "mean", "std"):
            d[f] = list(d[f])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path=None) -> "ModelSpec":
        if not isinstance(d, Mapping):
            raise CheckpointError(path, f"model_spec must be a dict, found {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        unknown = sorted(set(d) - set(fields))
        missing = [n for n in required if n not in d]
        if unknown or missing:
            raise CheckpointError(path, "model_spec does not fit this version of the engine:"
                                        + (f" unknown fields {unknown}" if unknown else "")
                                        + (f" missing fields {missing}" if missing else ""))
        try:
            return cls(**dict(d))
        except (ConfigError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"model_spec is invalid: {getattr(exc, 'reason', exc)}") from None


MODEL_SPECS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("crw-r18-s8", "resnet18", (1, 2, 1, 1), True, "layer3", 8, 256, True, "rgb",
              IMAGENET_MEAN, IMAGENET_STD, "crw", 0.05,
              "CRW test encoder (ajabri/videowalk, --model-type scratch): ResNet-18 res3, reflect padding"),
    ModelSpec("crw-r50-s8", "resnet50", (1, 2, 1, 1), False, "layer3", 8, 1024, True, "rgb",
              IMAGENET_MEAN, IMAGENET_STD, "crw", 0.05,
              "ResNet-50 res3 at stride 8, zero padding (CRW's imagenet50/moco50 baselines)"),
    ModelSpec("imagenet-r18-s8", "resnet18", (1, 2, 1, 1), False, "layer3", 8, 256, True, "rgb",
              IMAGENET_MEAN, IMAGENET_STD, "crw", 0.05,
              "ResNet-18 res3 at stride 8, zero padding (CRW's imagenet18 baseline)"),
    ModelSpec("mast-r18-s4", "mast18", (1, 2, 1, 1), False, "layer4", 4, 64, False, "lab",
              (50.0, 0.0, 0.0), (50.0, 127.0, 127.0), "mast", 1.0,
              "MAST encoder: float Lab input, 64-d at stride 4, no normalisation (spec §1.3, §4.1)"),
]}


def get_spec(name: "str | ModelSpec") -> ModelSpec:
    if isinstance(name, ModelSpec):
        return name
    try:
        return MODEL_SPECS[name]
    except (KeyError, TypeError):
        raise ConfigError(None, f"unknown model {name!r} (known: {', '.join(MODEL_SPECS)})") from None


def _rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """sRGB in [0,1], [B,3,H,W] -> float CIE Lab (L in [0,100]) as OpenCV's float BGR2Lab gives it.

    Exact CIE formulas (D65, OpenCV's matrix and thresholds).  OpenCV's own float path uses table
    and fixed-point approximations: measured against opencv-python-headless 5.0 on random colours,
    |diff| median ~0.08, max < 0.5 (L in [0,100], a/b in ~[-127,127]), i.e. < 0.004 after MAST's
    normalisation.  Done in torch so it runs on the encoder's device.
    """
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp_min(0) ** 2.4)
    m = x.new_tensor([[0.412453, 0.357580, 0.180423],
                      [0.212671, 0.715160, 0.072169],
                      [0.019334, 0.119193, 0.950227]])
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    xyz = xyz / x.new_tensor([0.950456, 1.0, 1.088754]).view(1, 3, 1, 1)
    t = 0.008856
    f = torch.where(xyz > t, xyz.clamp_min(t) ** (1 / 3), 7.787 * xyz + 16 / 116)
    y = xyz[:, 1]
    L = torch.where(y > t, 116 * f[:, 1] - 16, 903.3 * y)
    return torch.stack([L, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


class Encoder(nn.Module):
    """A trunk plus the preprocessing and normalisation its spec prescribes."""

    def __init__(self, spec: ModelSpec, trunk: nn.Module):
        super().__init__()
        self.spec = spec
        self.trunk = trunk
        self.register_buffer("_mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def min_side(self) -> int:
        # Reflect padding needs >= 2 pixels at every padded level; 2 cells at the output is enough.
        return 2 * self.spec.stride

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        s = self.spec.stride
        return -(-h // s), -(-w // s)

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        if rgb.dtype != torch.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3:
            raise ConfigError(None, f"preprocess expects uint8 [B,H,W,3], got {rgb.dtype} {tuple(rgb.shape)}")
        # contiguous(): a permuted NHWC view would silently route convs to the channels-last kernels,
        # whose float rounding differs from the reference (the extractor picks the layout itself).
        x = rgb.to(self._mean.device).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        if self.spec.colour == "lab":
            x = _rgb_to_lab(x)
        return (x - self._mean) / self._std

    def normalize(self, y: torch.Tensor) -> torch.Tensor:
        """The spec's per-cell normalisation, always in float32 (reduced-precision trunks included)."""
        y = y.float()
        return F.normalize(y, p=2, dim=1, eps=1e-12) if self.spec.l2_normalize else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.trunk(x))


def build_trunk(spec: ModelSpec) -> nn.Module:
    if spec.arch == "mast18":
        return MastResNet18()
    return ResNet(spec.arch, spec.layer_strides, spec.reflect_padding, spec.out_layer)


def build_encoder(spec: "ModelSpec | str") -> Encoder:
    """Encoder with freshly initialised weights, in eval mode (BN uses running statistics)."""
    spec = get_spec(spec)
    return Encoder(spec, build_trunk(spec)).eval()


def random_encoder(spec: "ModelSpec | str" = "crw-r18-s8", seed: int = 0) -> Encoder:
    """Explicitly random weights (tests, benchmarks, `--random-init`); reproducible from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_encoder(spec)
