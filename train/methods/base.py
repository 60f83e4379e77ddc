"""The interface every training method implements; the trainer knows nothing else about methods."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from engine.errors import ConfigError
from engine.models.specs import Encoder, ModelSpec, build_trunk, get_spec

_LAYERS = ("layer1", "layer2", "layer3", "layer4")
_WIDTH = {"resnet18": 64, "resnet50": 256}


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * source, parameter by parameter (MoCo-style keys)."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


@dataclass
class MethodOutput:
    loss: torch.Tensor                                  # scalar, what the optimiser minimises
    metrics: dict = field(default_factory=dict)         # name -> float tensor (logged as means)


class Method(nn.Module):
    """A self-supervised objective around an engine encoder trunk.

    Subclasses set `name`, `family` and `augmentation` (the default pipeline of `train.augment`),
    build `self.trunk` with `build_training_trunk` in `__init__(config)` (so the weights live in the
    engine's ResNet and export as they are), and implement `forward(batch) -> MethodOutput`.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""            # "walk" | "reconstruction" | "transformation"
    augmentation: ClassVar[str] = ""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.spec: ModelSpec = get_spec(config.get("model", "crw-r18-s8"))
        self.trunk: nn.Module = nn.Identity()

    def build_training_trunk(self, train_layer: "str | None") -> tuple[nn.Module, int]:
        """The engine trunk of `self.spec`, optionally deeper/shallower for training.

        CRW trains through layer4 (512-d) but is tested on layer3 (spec §1.2 / quirk §11a-3); the
        checkpoint keeps all trained layers and the engine ignores those past the spec's out_layer.
        Returns (trunk, output channels).
        """
        spec = self.spec
        if train_layer and train_layer != spec.out_layer:
            if spec.arch not in _WIDTH or train_layer not in _LAYERS:
                raise ConfigError(None, f"train_layer {train_layer!r} does not apply to {spec.arch}")
            n = _LAYERS.index(train_layer) + 1
            stride = 4
            for s in spec.layer_strides[:n]:
                stride *= s
            spec = dataclasses.replace(spec, out_layer=train_layer, stride=stride,
                                       channels=_WIDTH[spec.arch] * 2 ** (n - 1))
        return build_trunk(spec), spec.channels

    def set_stage(self, stage: dict) -> None:
        """Called by the trainer when a schedule stage starts (e.g. JSTG's node dropout)."""

    def identity_head(self) -> None:
        """Adapting a checkpoint that kept only the trunk: make the loss's projection an identity
        (called with the config's embedding size equal to the trunk's channels)."""

    def export_encoder(self) -> Encoder:
        """The encoder the checkpoint stores: the engine spec around the trained trunk (shared weights)."""
        return Encoder(self.spec, self.trunk)

    def forward(self, batch: dict) -> MethodOutput:   # pragma: no cover - abstract
        raise NotImplementedError
