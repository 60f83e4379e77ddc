"""Published checkpoint layouts of the correspondence methods, mapped onto our encoders.

Each official repository saves its whole training model, wrapped differently (research spec §3.4,
§4.4, §6.10, §7.7, §8.5, §9.7).  A `Layout` recognises a file by one key that only that layout
has, renames the encoder's keys to our trunk's names, and drops everything inference does not use
(colour auto-encoders, heads, memory queues, teachers), exactly as the official test code ignores
them.  `default_model` picks the registry spec from what the file itself says.

Key names here are *after* any number of leading `module.` (DataParallel/DDP) prefixes have been
removed, and after unwrapping `{'state_dict': ...}` / `{'model': ...}` containers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

_Rules = tuple  # of (compiled regex, replacement) pairs, applied in order, first match wins


def _rules(*pairs: tuple[str, str]) -> _Rules:
    return tuple((re.compile(p), r) for p, r in pairs)


def _apply(rules: _Rules, key: str) -> "str | None":
    for rx, repl in rules:
        if rx.match(key):
            return rx.sub(repl, key, count=1)
    return None


@dataclass(frozen=True)
class Layout:
    name: str                    # short id used in messages and docs
    title: str                   # method / repository
    signature: str               # the key whose presence identifies the layout
    to_ours: _Rules              # file key -> our trunk key (unmatched keys are dropped)
    to_file: _Rules              # our trunk key -> file key (for error messages)
    default_model: Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], tuple[str, str]]

    def matches(self, sd: Mapping[str, torch.Tensor]) -> bool:
        if self.signature.endswith("*"):                   # a prefix: any key under it
            return any(k.startswith(self.signature[:-1]) for k in sd)
        return self.signature in sd

    def rename(self, key: str) -> "str | None":
        return _apply(self.to_ours, key)

    def file_key(self, ours: str) -> str:
        return _apply(self.to_file, ours) or ours


def _epoch(container: Mapping[str, Any]) -> "int | None":
    e = container.get("epoch")
    return int(e) if isinstance(e, int) and not isinstance(e, bool) else None


# -- CRW: ajabri/videowalk train.py {'model': CRW.state_dict(), 'optimizer', 'lr_scheduler', 'epoch', 'args'}
# `encoder.model.<torchvision key>` (layer1-4), `selfsim_fc.0.*`; test.py renames the old padded-conv
# names `conv1.1.weight`/`conv2.1.weight` and drops `head` keys (spec §3.4).

def _crw_model(sd, container) -> tuple[str, str]:
    kind = getattr(container.get("args"), "model_type", None)
    named = {"scratch": "crw-r18-s8", "imagenet18": "imagenet-r18-s8", "imagenet50": "crw-r50-s8",
             "moco50": "crw-r50-s8"}.get(kind)
    if named:
        return named, f"args.model_type={kind!r}"
    if "encoder.model.layer1.0.conv3.weight" in sd:
        return "crw-r50-s8", "Bottleneck keys (ResNet-50)"
    return "crw-r18-s8", "BasicBlock keys (ResNet-18)"


CRW = Layout(
    # Any `encoder.model.*` key: the older padded-conv files have no plain `conv1.weight`.
    "crw", "CRW (ajabri/videowalk pretrained.pth)", "encoder.model.*",
    _rules((r"^encoder\.model\.((?:.*\.)?)conv([12])\.1\.weight$", r"\1conv\2.weight"),
           (r"^encoder\.model\.", "")),
    _rules((r"^", "encoder.model.")),
    _crw_model)


# -- MAST: zlai0/MAST main.py {'epoch', 'state_dict': MAST.state_dict(), 'optimizer'} (spec §4.4):
# `feature_extraction.<MAST ResNet18 names>` + `post_convolution.*`; our MastResNet18 uses the same
# names without the `feature_extraction.` prefix.

MAST = Layout(
    "mast", "MAST (zlai0/MAST checkpoint)", "feature_extraction.conv1.0.weight",
    _rules((r"^feature_extraction\.", ""), (r"^(post_convolution\.)", r"\1")),
    _rules((r"^(post_convolution\.)", r"\1"), (r"^", "feature_extraction.")),
    lambda sd, c: ("mast-r18-s4", "MAST key names"))


# -- LIIR (unofficial shasha521/LIIR_pytorch): {'epoch'|'iter', 'state_dict', ['optimizer']} (spec §8.5).
# The encoder `ResNet_hr` has torchvision-style names; our LiirResNet18 keeps MAST's names, so:
# conv1 -> conv1.0, bn1 -> conv1.1, block convN/bnN -> left.{0,1,3,4}, downsample -> shortcut.
# Dropped: conv_semantic(_k).* (the 1/8 inter-video head), colorizer.{feats,refs}_queue/flag (memory bank).

LIIR = Layout(
    "liir", "LIIR (shasha521/LIIR_pytorch, unofficial)", "feature_extraction.pos_embed1",
    _rules((r"^feature_extraction\.conv1\.", "conv1.0."),
           (r"^feature_extraction\.bn1\.", "conv1.1."),
           (r"^feature_extraction\.pos_embed1$", "pos_embed1"),
           (r"^feature_extraction\.(layer\d\.\d+)\.conv1\.", r"\1.left.0."),
           (r"^feature_extraction\.(layer\d\.\d+)\.bn1\.", r"\1.left.1."),
           (r"^feature_extraction\.(layer\d\.\d+)\.conv2\.", r"\1.left.3."),
           (r"^feature_extraction\.(layer\d\.\d+)\.bn2\.", r"\1.left.4."),
           (r"^feature_extraction\.(layer\d\.\d+)\.downsample\.", r"\1.shortcut."),
           (r"^feature_extraction\.(.*)$", r"\1"),       # anything else of the encoder: reported, not dropped
           (r"^(post_convolution\.)", r"\1")),
    _rules((r"^conv1\.0\.", "feature_extraction.conv1."),
           (r"^conv1\.1\.", "feature_extraction.bn1."),
           (r"^pos_embed1$", "feature_extraction.pos_embed1"),
           (r"^(layer\d\.\d+)\.left\.0\.", r"feature_extraction.\1.conv1."),
           (r"^(layer\d\.\d+)\.left\.1\.", r"feature_extraction.\1.bn1."),
           (r"^(layer\d\.\d+)\.left\.3\.", r"feature_extraction.\1.conv2."),
           (r"^(layer\d\.\d+)\.left\.4\.", r"feature_extraction.\1.bn2."),
           (r"^(layer\d\.\d+)\.shortcut\.", r"feature_extraction.\1.downsample."),
           (r"^(post_convolution\.)", r"\1")),
    lambda sd, c: ("liir-r18-s4", "LIIR key names (feature_extraction.pos_embed1)"))


# -- UVC / ContrastCorr: {'epoch', 'state_dict', 'best_loss'} of the DataParallel-wrapped
# `track_match_comb` (spec §6.10, §7.7): `module.gray_encoder.<torchvision key>` (layer1-4), plus the
# frozen colour auto-encoder `rgb_encoder.*`/`decoder.*` and `normalize.{mean,std}`, all dropped.
# The two methods write identical keys.  Their schedules differ by an order of magnitude (UVC
# --nepoch 30, ContrastCorr --nepoch 200 with a 100-epoch warm-up, spec §6.8, §7.2), so the saved
# epoch tells the released files apart; anything else needs model=.

UVC_MAX_EPOCH = 30


def _uvc_model(sd, container) -> tuple[str, str]:
    if "gray_encoder.layer1.0.conv3.weight" in sd:
        return "uvc-r50-s8", "Bottleneck keys (UVC's ResNet-50 option)"
    epoch = _epoch(container)
    if epoch is not None and epoch > UVC_MAX_EPOCH:
        return "contrastcorr-r18-s8", (f"epoch {epoch} > {UVC_MAX_EPOCH} (UVC trains 30 epochs, ContrastCorr 200); "
                                       "pass model=uvc-r18-s8 if it is UVC")
    return "uvc-r18-s8", (f"epoch {epoch} <= {UVC_MAX_EPOCH}" if epoch is not None else "no epoch recorded") + \
        " (ContrastCorr writes the same keys: pass model=contrastcorr-r18-s8 if it is ContrastCorr)"


UVC = Layout(
    "uvc", "UVC / ContrastCorr (Liusifei/UVC, 594422814/ContrastCorr checkpoint_latest.pth.tar)",
    "gray_encoder.conv1.weight",
    _rules((r"^gray_encoder\.", "")),
    _rules((r"^", "gray_encoder.")),
    _uvc_model)


# -- STT: qianduoduolr/Spa-then-Temp, MMCV {'meta', 'state_dict', 'optimizer'} (spec §9.7).  Student
# `backbone.*` with every conv+BN wrapped in a ConvModule (`.conv`/`.bn`), the frozen teacher
# `backbone_t.*` (dropped), the test model's `iteration` buffer (dropped).  The mapping is the inverse
# of MMCV's `_load_torchvision_checkpoint`.  Stride 4 and stride 8 networks have identical keys (the
# stride is a test-config choice), so stride 8 is assumed; model=stt-r18-s4 selects the other.

def _stt_model(sd, container) -> tuple[str, str]:
    if "backbone.layer1.0.conv3.conv.weight" in sd:
        return "stt-r50-s8", "Bottleneck keys (ResNet-50); stride 8 assumed (pass model=stt-r50-s4 for stride 4)"
    return "stt-r18-s8", "BasicBlock keys (ResNet-18); stride 8 assumed (pass model=stt-r18-s4 for stride 4)"


STT = Layout(
    "stt", "Spatial-then-Temporal (qianduoduolr/Spa-then-Temp, MMCV checkpoint)", "backbone.conv1.conv.weight",
    _rules((r"^backbone\.conv1\.conv\.", "conv1."),
           (r"^backbone\.conv1\.bn\.", "bn1."),
           (r"^backbone\.(layer\d\.\d+)\.downsample\.conv\.", r"\1.downsample.0."),
           (r"^backbone\.(layer\d\.\d+)\.downsample\.bn\.", r"\1.downsample.1."),
           (r"^backbone\.(layer\d\.\d+)\.conv(\d)\.conv\.", r"\1.conv\2."),
           (r"^backbone\.(layer\d\.\d+)\.conv(\d)\.bn\.", r"\1.bn\2."),
           (r"^backbone\.(.*)$", r"\1")),                   # anything else of the student: reported
    _rules((r"^conv1\.", "backbone.conv1.conv."),
           (r"^bn1\.", "backbone.conv1.bn."),
           (r"^(layer\d\.\d+)\.downsample\.0\.", r"backbone.\1.downsample.conv."),
           (r"^(layer\d\.\d+)\.downsample\.1\.", r"backbone.\1.downsample.bn."),
           (r"^(layer\d\.\d+)\.conv(\d)\.", r"backbone.\1.conv\2.conv."),
           (r"^(layer\d\.\d+)\.bn(\d)\.", r"backbone.\1.conv\2.bn."),
           (r"^", "backbone.")),
    _stt_model)


LAYOUTS: tuple[Layout, ...] = (CRW, MAST, LIIR, UVC, STT)


def strip_module(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove leading `module.` prefixes (DataParallel/DDP, possibly nested)."""
    out = {}
    for k, v in sd.items():
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out


def detect(sd: Mapping[str, torch.Tensor]) -> list[Layout]:
    """All layouts whose signature key is present (normally zero or one)."""
    return [lay for lay in LAYOUTS if lay.matches(sd)]


def describe_layouts() -> str:
    return "; ".join(f"{lay.name} ({lay.signature})" for lay in LAYOUTS)


def map_keys(layout: Layout, sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str],
                                                                      dict[str, int]]:
    """(tensors under our names, our name -> file name, dropped top-level prefixes -> count)."""
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped: dict[str, int] = {}
    for k, v in sd.items():
        ours = layout.rename(k)
        if ours is None:
            top = k.split(".", 1)[0] + (".*" if "." in k else "")
            dropped[top] = dropped.get(top, 0) + 1
            continue
        if ours in origin:   # two file keys landing on one parameter would silently overwrite
            raise ValueError(f"keys {origin[ours]} and {k} both map to {ours}")
        mapped[ours] = v
        origin[ours] = k
    return mapped, origin, dropped
