"""Encoders: hand-written ResNets, named specs, checkpoint loading/saving and importers of the
published checkpoint layouts (docs/ARCHITECTURE.md, docs/CHECKPOINTS.md)."""
from .checkpoints import (DEFAULT_MODEL, FORMAT, VERSION, default_checkpoint_path, load_encoder, read_checkpoint,
                          save_checkpoint, save_inference_checkpoint)
from .importers import LAYOUTS, Layout
from .resnet import BasicBlock, Bottleneck, LiirResNet18, MastResNet18, ResNet, resnet18, resnet34, resnet50
from .specs import MODEL_SPECS, Encoder, ModelSpec, build_encoder, build_trunk, get_spec, random_encoder

__all__ = [
    "BasicBlock", "Bottleneck", "DEFAULT_MODEL", "Encoder", "FORMAT", "LAYOUTS", "Layout", "LiirResNet18",
    "MODEL_SPECS", "MastResNet18", "ModelSpec", "ResNet", "VERSION", "build_encoder", "build_trunk",
    "default_checkpoint_path", "get_spec", "load_encoder", "random_encoder", "read_checkpoint", "resnet18",
    "resnet34", "resnet50", "save_checkpoint", "save_inference_checkpoint",
]
