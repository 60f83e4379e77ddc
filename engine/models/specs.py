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
from .resnet import LAYERS, STEM_POOLS, LiirResNet18, MastResNet18, ResNet

ARCHS = ("resnet18", "resnet34", "resnet50", "mast18", "liir18")
_FIXED_ARCHS = ("mast18", "liir18")            # MAST topology: strides/out layer are not options
# Input encodings (spec §11b-2, -3).  "rgb": RGB in [0,1].  "lab": OpenCV *float* Lab of RGB/255
# (L in [0,100]; MAST, LIIR, STT).  "lab8": OpenCV *8-bit* Lab (L*255/100, a+128, b+128, rounded)
# divided by 256 -- UVC's (x-128)/128 followed by (x+1)/2 is exactly x/256 (ContrastCorr).
# "lab8-l": that L channel repeated 3 times (UVC's "gray" input).  `mean`/`std` apply afterwards.
COLOURS = ("rgb", "lab", "lab8", "lab8-l")
PROTOCOLS = ("crw", "mast", "uvc", "stt")
WINDOWS = ("circle", "square", "none")
AFFINITIES = ("softmax", "mutual")
DECODES = ("argmax", "minmax")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAB_MEAN = (50.0, 0.0, 0.0)
LAB_STD = (50.0, 127.0, 127.0)
_WIDTH = {"resnet18": 64, "resnet34": 64, "resnet50": 256}   # layer1 output channels; doubles per layer

# Inference-protocol hints (spec §3.3, §4.3, §6.9, §7.6, §8.3-8.4, §9.6, §11b-1..6).  A spec field
# left at None takes its protocol's value here, so specs saved before these fields existed keep
# their meaning.  What each protocol means:
#   crw  - keys: frame 0 (global) + `context` previous frames within a circle (dist < radius, cells);
#          top-k jointly over all keys, softmax over the k scores / temperature; soft labels kept.
#   mast - references {0, 5, t-1, t-3, t-5}; square window |dx|,|dy| <= radius per reference; ONE
#          softmax over all windows (no top-k, raw dot products); hard argmax labels kept (§4.3).
#   uvc  - frame 0 + `context` previous frames, each separately: global softmax over the reference,
#          keep the top-k per target WITHOUT renormalising, average the predictions; soft labels
#          kept; frames floored to multiples of `size_multiple`; per-channel min-max before argmax.
#   stt  - frame 0 + `context` preceding frames (frame 0 twice for t <= context), square window of
#          half-width `radius` on every key incl. frame 0, joint top-k, softmax / temperature.
PROTOCOL_DEFAULTS: dict[str, dict[str, Any]] = {
    "crw": dict(topk=10, context=20, radius=12.0, window="circle", affinity="softmax", soft_memory=True,
                short_side=0, size_multiple=1, decode="argmax", compact_prior=False),
    "mast": dict(topk=0, context=3, radius=12.0, window="square", affinity="softmax", soft_memory=False,
                 short_side=0, size_multiple=1, decode="argmax", compact_prior=False),
    "uvc": dict(topk=5, context=7, radius=0.0, window="none", affinity="softmax", soft_memory=True,
                short_side=480, size_multiple=64, decode="minmax", compact_prior=False),
    "stt": dict(topk=10, context=20, radius=12.0, window="square", affinity="softmax", soft_memory=True,
                short_side=480, size_multiple=1, decode="minmax", compact_prior=False),
}
HINTS = tuple(PROTOCOL_DEFAULTS["crw"])


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
    temperature: float = 0.05               # scores are divided by it before the softmax (1 = raw)
    description: str = ""
    # -- architecture details beyond the torchvision knobs (None: the arch's own) --
    stem_pool: "str | None" = None          # "max" (torchvision) | "avg" | "none"; MAST/LIIR: "none"
    pos_embed: int = 0                      # LIIR 1DAPE grid side (training size / 2); 0 = none
    # -- inference-protocol hints (None: the protocol's value in PROTOCOL_DEFAULTS) --
    topk: "int | None" = None               # 0 = no top-k
    context: "int | None" = None            # short-term memory frames besides frame 0
    radius: "float | None" = None           # feature cells; meaning depends on `window`
    window: "str | None" = None             # "circle" (dist < radius) | "square" (|d| <= radius) | "none"
    affinity: "str | None" = None           # "softmax" | "mutual" (ContrastCorr's mutual correlation)
    soft_memory: "bool | None" = None       # past frames keep soft predictions (else hard argmax)
    short_side: "int | None" = None         # test resolution: short side in pixels, 0 = native
    size_multiple: "int | None" = None      # frame sides floored (UVC: 64) / padded (LIIR: 4) to it
    decode: "str | None" = None             # "argmax" | "minmax" (per-channel min-max, then argmax)
    compact_prior: "bool | None" = None     # LIIR's top-2 Gaussian compactness prior at test time

    def __post_init__(self):
        # Lists come back from JSON/YAML; keep the dataclass hashable and comparable.
        for f in ("layer_strides", "mean", "std"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        if self.stem_pool is None:
            object.__setattr__(self, "stem_pool", "none" if self.arch in _FIXED_ARCHS else "max")
        for k, v in PROTOCOL_DEFAULTS.get(self.protocol, PROTOCOL_DEFAULTS["crw"]).items():
            if getattr(self, k) is None:
                object.__setattr__(self, k, v)
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
        if self.stem_pool not in STEM_POOLS:
            p.append(f"stem_pool must be one of {STEM_POOLS}, got {self.stem_pool!r}")
            return p
        if self.arch in _FIXED_ARCHS:
            if (self.layer_strides != MastResNet18.layer_strides or self.out_layer != "layer4" or self.reflect_padding
                    or self.stem_pool != "none"):
                p.append(f"{self.arch} is fixed: layer_strides (1, 2, 1, 1), out_layer 'layer4', zero padding, "
                         "no stem pool")
            stride, channels = MastResNet18.stride, MastResNet18.out_channels
        else:
            n = LAYERS.index(self.out_layer) + 1
            stride = (2 if self.stem_pool == "none" else 4) * math.prod(self.layer_strides[:n])
            channels = _WIDTH[self.arch] * 2 ** (n - 1)
        if not isinstance(self.pos_embed, int) or self.pos_embed < 0:
            p.append(f"pos_embed must be an integer >= 0, got {self.pos_embed!r}")
        elif (self.arch == "liir18") != (self.pos_embed > 0):
            p.append("pos_embed > 0 is required by liir18 and allowed only there")
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
        p += self._hint_problems()
        return p

    def _hint_problems(self) -> list[str]:
        p = []
        for f in ("topk", "context", "short_side"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                p.append(f"{f} must be an integer >= 0, got {v!r}")
        if not isinstance(self.size_multiple, int) or isinstance(self.size_multiple, bool) or self.size_multiple < 1:
            p.append(f"size_multiple must be an integer >= 1, got {self.size_multiple!r}")
        if not isinstance(self.radius, (int, float)) or isinstance(self.radius, bool) or self.radius < 0:
            p.append(f"radius must be a number >= 0, got {self.radius!r}")
        for f, allowed in (("window", WINDOWS), ("affinity", AFFINITIES), ("decode", DECODES)):
            if getattr(self, f) not in allowed:
                p.append(f"{f} must be one of {allowed}, got {getattr(self, f)!r}")
        for f in ("soft_memory", "compact_prior"):
            if not isinstance(getattr(self, f), bool):
                p.append(f"{f} must be true or false, got {getattr(self, f)!r}")
        if self.window != "none" and not self.radius > 0:
            p.append(f"a {self.window!r} window needs radius > 0")
        return p

    def protocol_hints(self) -> dict:
        """The inference-protocol hints as one dict (what a propagator or a UI needs to read)."""
        return {"protocol": self.protocol, "temperature": self.temperature,
                **{k: getattr(self, k) for k in HINTS}}

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
              LAB_MEAN, LAB_STD, "mast", 1.0,
              "MAST encoder: float Lab input, 64-d at stride 4, no normalisation (spec §1.3, §4.1)"),
    # UVC (spec §6.3, §6.9-6.10): ResNet-18 layer4 with layer3/layer4 at stride 1 -> 512-d at stride 8,
    # zero padding, no L2; input = 8-bit Lab L channel x3 -> ImageNet normalisation; tau = 1 (raw).
    ModelSpec("uvc-r18-s8", "resnet18", (1, 2, 1, 1), False, "layer4", 8, 512, False, "lab8-l",
              IMAGENET_MEAN, IMAGENET_STD, "uvc", 1.0,
              "UVC (Liusifei/UVC) gray encoder: L channel x3, 512-d at stride 8, global top-5 per reference"),
    ModelSpec("uvc-r50-s8", "resnet50", (1, 2, 1, 1), False, "layer4", 8, 2048, False, "lab8-l",
              IMAGENET_MEAN, IMAGENET_STD, "uvc", 1.0,
              "UVC with its ResNet-50 option (Resnet='r50'): 2048-d at stride 8; no released weights known"),
    # ContrastCorr (spec §7.2, §7.6-7.7): UVC's encoder fed the full 3-channel 8-bit Lab frame,
    # mutual-correlation affinity at test, 560p.
    ModelSpec("contrastcorr-r18-s8", "resnet18", (1, 2, 1, 1), False, "layer4", 8, 512, False, "lab8",
              IMAGENET_MEAN, IMAGENET_STD, "uvc", 1.0,
              "ContrastCorr (594422814/ContrastCorr): 3-channel Lab input, mutual-correlation affinity, 560p",
              affinity="mutual", short_side=560),
    # LIIR (spec §8.3-8.5, unofficial shasha521/LIIR_pytorch): MAST topology + 1DAPE, R = 14,
    # compactness prior on, frames padded to a multiple of 4.
    ModelSpec("liir-r18-s4", "liir18", (1, 2, 1, 1), False, "layer4", 4, 64, False, "lab",
              LAB_MEAN, LAB_STD, "mast", 1.0,
              "LIIR (unofficial LIIR_pytorch): MAST encoder + learnable position embedding, R = 14, compact prior",
              pos_embed=128, radius=14.0, size_multiple=4, compact_prior=True),
    # STT (spec §9.6-9.7): MMCV ResNet read at layer3, float Lab input, L2, tau 0.07, top-10,
    # frame 0 + 20 preceding, square window side 24 (s8) / 70 (s4) cells = half-width 12 / 35.
    ModelSpec("stt-r18-s8", "resnet18", (1, 2, 2, 1), False, "layer3", 8, 256, True, "lab",
              LAB_MEAN, LAB_STD, "stt", 0.07,
              "Spatial-then-Temporal ResNet-18, stride 8 (strides (1,2,2,1), no stem pool), layer3",
              stem_pool="none", radius=12.0),
    ModelSpec("stt-r18-s4", "resnet18", (1, 1, 1, 1), False, "layer3", 4, 256, True, "lab",
              LAB_MEAN, LAB_STD, "stt", 0.07,
              "Spatial-then-Temporal ResNet-18, stride 4 (all strides 1, 3x3/2 average-pool stem), layer3",
              stem_pool="avg", radius=35.0),
    ModelSpec("stt-r50-s8", "resnet50", (1, 2, 2, 1), False, "layer3", 8, 1024, True, "lab",
              LAB_MEAN, LAB_STD, "stt", 0.07,
              "Spatial-then-Temporal ResNet-50, stride 8 (strides (1,2,2,1), no stem pool), layer3",
              stem_pool="none", radius=12.0),
    ModelSpec("stt-r50-s4", "resnet50", (1, 1, 1, 1), False, "layer3", 4, 1024, True, "lab",
              LAB_MEAN, LAB_STD, "stt", 0.07,
              "Spatial-then-Temporal ResNet-50, stride 4 (all strides 1, 3x3/2 average-pool stem), layer3",
              stem_pool="avg", radius=35.0),
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


def _lab8(lab: torch.Tensor) -> torch.Tensor:
    """Float Lab -> OpenCV's 8-bit Lab values (L*255/100, a+128, b+128, rounded, clipped to 0..255).

    UVC/ContrastCorr read frames with cv2 as uint8 and convert with COLOR_BGR2Lab, so their encoder
    saw these integers (spec §6.2, §11b-2); rounding here keeps that quantisation.
    """
    scale = lab.new_tensor([255.0 / 100.0, 1.0, 1.0]).view(1, 3, 1, 1)
    offset = lab.new_tensor([0.0, 128.0, 128.0]).view(1, 3, 1, 1)
    return torch.round(lab * scale + offset).clamp_(0, 255)


class Encoder(nn.Module):
    """A trunk plus the preprocessing and normalisation its spec prescribes.

    `source` says where the weights came from (set by the checkpoint loader: layout, dropped keys).
    """

    def __init__(self, spec: ModelSpec, trunk: nn.Module):
        super().__init__()
        self.spec = spec
        self.trunk = trunk
        self.source = ""
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
        elif self.spec.colour in ("lab8", "lab8-l"):
            x = _lab8(_rgb_to_lab(x)) / 256.0
            if self.spec.colour == "lab8-l":
                x = x[:, :1].expand(-1, 3, -1, -1)
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
    if spec.arch == "liir18":
        return LiirResNet18(spec.pos_embed)
    return ResNet(spec.arch, spec.layer_strides, spec.reflect_padding, spec.out_layer, stem_pool=spec.stem_pool)


def build_encoder(spec: "ModelSpec | str") -> Encoder:
    """Encoder with freshly initialised weights, in eval mode (BN uses running statistics)."""
    spec = get_spec(spec)
    return Encoder(spec, build_trunk(spec)).eval()


def random_encoder(spec: "ModelSpec | str" = "crw-r18-s8", seed: int = 0) -> Encoder:
    """Explicitly random weights (tests, benchmarks, `--random-init`); reproducible from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_encoder(spec)
