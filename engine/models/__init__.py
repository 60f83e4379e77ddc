"""Encoders: hand-written ResNets, named specs, checkpoint loading/saving (docs/ARCHITECTURE.md)."""
from .checkpoints import (DEFAULT_MODEL, FORMAT, VERSION, default_checkpoint_path, load_encoder, read_checkpoint,
                          save_checkpoint)
from .resnet import BasicBlock, Bottleneck, MastResNet18, ResNet, resnet18, resnet50
from .specs import MODEL_SPECS, Encoder, ModelSpec, build_encoder, build_trunk, get_spec, random_encoder

__all__ = [
    "BasicBlock", "Bottleneck", "DEFAULT_MODEL", "Encoder", "FORMAT", "MODEL_SPECS", "MastResNet18", "ModelSpec",
    "ResNet", "VERSION", "build_encoder", "build_trunk", "default_checkpoint_path", "get_spec", "load_encoder",
    "random_encoder", "read_checkpoint", "resnet18", "resnet50", "save_checkpoint",
]
