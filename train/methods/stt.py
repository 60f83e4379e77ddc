"""Spatial-then-Temporal (Li & Liu 2023; spec §9): two methods on the one trainer.

`stt_spatial` (step 1, §9.1): MoCo v2 instance discrimination on still images, here the frames of
the training clips (each frame of a clip is an image; two augmented views, `two_views` pipeline):
a torchvision ResNet-18 (RGB, max-pool stem, strides 2-2-2) + 2-layer MLP head (512 -> 128), a
momentum key encoder (m 0.999), a FIFO queue of negative keys, InfoNCE at τ 0.2.  The checkpoint is
the backbone (exported under `imagenet-r18-s8`, whose weights have the same names and shapes).

`stt` (step 2, §9.2-9.4): the student (MMCV ResNet-18, strides (1,2,2,4) — layer4 here at stride 2 + 2x2 average pool —, no stem pool, Lab input
with MAST's a/b dropout) reconstructs the dropped channel at two pyramid levels (layer2 at stride 4,
R 12; layer3 at stride 8, R 6) through window-masked correlations; the stride-8 correlation is
distilled from the 2x2-pooled stride-4 one on the entropy-selected cells (x1000); its layer4
(stride 32) global affinity is distilled from the frozen step-1 teacher's (RGB, τ 0.07) (x50).  The
student starts from the teacher's weights (`teacher` in the config: a step-1 checkpoint; without
one, both start from the same seeded random weights, which only smoke tests should do).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ConfigError
from engine.models.resnet import ResNet
from engine.models.specs import Encoder, get_spec

from . import register
from .base import Method, MethodOutput, ema_update
from .mast import drop_chroma
from .stt_parts import (entropy_selection, global_distill_loss, info_nce, local_correlation, local_distill_loss,
                        pool_correlation)


def torchvision_r18() -> ResNet:
    return ResNet("resnet18", (1, 2, 2, 2), False, "layer4", stem_pool="max")


def pyramid(trunk: ResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of every layer of a ResNet trunk."""
    x = trunk.relu(trunk.bn1(trunk.conv1(x)))
    if trunk.stem_pool == "max":
        x = trunk.maxpool(x)
    elif trunk.stem_pool == "avg":
        x = trunk.avgpool_stem(x)
    out = {}
    for name in trunk.layer_names:
        x = getattr(trunk, name)(x)
        out[name] = x
    return out


@register
class STTSpatial(Method):
    name = "stt_spatial"
    family = "reconstruction"
    augmentation = "two_views"

    def __init__(self, config: dict):
        super().__init__(config)
        lc = config.get("loss", {})
        self.temperature = float(lc.get("temperature", 0.2))
        self.momentum = float(lc.get("momentum", 0.999))
        dim, hidden = int(lc.get("embed_dim", 128)), int(lc.get("hidden_dim", 512))
        self.trunk = torchvision_r18()
        self.head = nn.Sequential(nn.Linear(512, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.key_trunk = copy.deepcopy(self.trunk).requires_grad_(False)
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(int(lc.get("queue", 65536)), dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.int64))

    def embed(self, trunk, head, x):
        return F.normalize(head(trunk(x).mean(dim=(2, 3))), dim=1)

    def forward(self, batch: dict) -> MethodOutput:
        v = batch["views"]                               # [B, T, 2, 3, S, S]
        v = v.flatten(0, 1)
        q = self.embed(self.trunk, self.head, v[:, 0])
        ema_update(self.key_trunk, self.trunk, self.momentum)
        ema_update(self.key_head, self.head, self.momentum)
        with torch.no_grad():
            k = self.embed(self.key_trunk, self.key_head, v[:, 1])
        with torch.autocast(v.device.type, enabled=False):
            loss = info_nce(q.float(), k.float(), self.queue.clone(), self.temperature)
            acc = ((q * k).sum(1, keepdim=True) > q.float() @ self.queue.t()).all(1).float().mean()
        with torch.no_grad():
            n, p = self.queue.shape[0], int(self.queue_ptr)
            idx = (p + torch.arange(len(k), device=k.device)) % n
            self.queue[idx] = k.float()
            self.queue_ptr.fill_((p + len(k)) % n)
        return MethodOutput(loss, {"instance_accuracy": acc.detach()})

    def export_encoder(self) -> Encoder:
        return Encoder(get_spec("imagenet-r18-s8"), self.trunk)


@register
class STT(Method):
    name = "stt"
    family = "reconstruction"
    augmentation = "frames"

    def __init__(self, config: dict):
        super().__init__(config)
        lc = config.get("loss", {})
        self.radii = (int(lc.get("radius_fine", 12)), int(lc.get("radius_coarse", 6)))
        self.fraction = float(lc.get("entropy_fraction", 0.7))
        self.weights = {k: float(lc.get(k, d)) for k, d in (("recon_fine", 1.0), ("recon_coarse", 1.0),
                                                              ("local_distill", 1000.0), ("global_distill", 50.0))}
        self.teacher_temperature = float(lc.get("teacher_temperature", 0.07))
        # MMCV's layer4 stride is 4; the engine's ResNet allows 1 or 2, so layer4 runs at stride 2 and
        # a 2x2 average pool brings it to the teacher's stride-32 grid (layer2/3, the features the
        # engine uses, are exactly the official ones).
        self.trunk = ResNet("resnet18", (1, 2, 2, 2), False, "layer4", stem_pool="none")
        self.teacher = torchvision_r18()
        teacher = config.get("teacher")
        if teacher:
            from engine.models.checkpoints import read_checkpoint
            sd = read_checkpoint(teacher)["state_dict"]
            missing = [k for k in self.teacher.state_dict() if k not in sd]
            if missing:
                raise ConfigError(teacher, f"is not a ResNet-18 with layer4 (missing {missing[:3]})")
            self.teacher.load_state_dict({k: sd[k].float() for k in self.teacher.state_dict()})
        self.trunk.load_state_dict(self.teacher.state_dict())     # the student starts as the teacher
        self.teacher.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()                                         # frozen, BN statistics included
        return self

    def forward(self, batch: dict) -> MethodOutput:
        x = batch["clips"]                                          # [B, 2, 3, H, W] normalised Lab
        inputs, chans = drop_chroma(x, batch["seed"].tolist())
        b = x.shape[0]
        feats = pyramid(self.trunk, inputs.flatten(0, 1))
        feats["layer4"] = F.avg_pool2d(feats["layer4"], 2)
        lv = {k: v.view(b, 2, *v.shape[1:]) for k, v in feats.items()}
        y = x[torch.arange(b, device=x.device), :, chans]            # [B, 2, H, W] the dropped channel
        with torch.no_grad():
            g = self.teacher(batch["rgb"].flatten(0, 1))
            g = g.view(b, 2, *g.shape[1:])
        metrics, loss = {}, 0.0
        with torch.autocast(x.device.type, enabled=False):
            corr = {}
            for level, (name, radius, key) in enumerate((("layer2", self.radii[0], "recon_fine"),
                                                          ("layer3", self.radii[1], "recon_coarse"))):
                f = lv[name].float()
                h, w = f.shape[-2:]
                c = local_correlation(f[:, 1], f[:, 0], radius)
                s = x.shape[-1] // w
                values = y[:, 0, ::s, ::s][:, :h, :w].reshape(b, h * w, 1).float()
                pred = (c @ values).view(b, 1, h, w)
                up = F.interpolate(pred, size=y.shape[-2:], mode="bilinear", align_corners=False)
                rec = F.smooth_l1_loss(20 * up, 20 * y[:, 1:2].float())
                loss = loss + self.weights[key] * rec
                metrics[f"{key}_loss"] = rec.detach()
                corr[name] = (c, h, w)
            c0, h0, w0 = corr["layer2"]
            mask = entropy_selection(lv["layer3"][:, 1].float(), lv["layer3"][:, 0].float(), self.radii[1], self.fraction)
            lc = local_distill_loss(corr["layer3"][0], pool_correlation(c0, h0, w0), mask)
            loss = loss + self.weights["local_distill"] * lc
            metrics["local_distill_loss"] = lc.detach()
            gc = global_distill_loss(lv["layer4"][:, 1].float(), lv["layer4"][:, 0].float(), g[:, 1].float(),
                                     g[:, 0].float(), self.teacher_temperature)
            loss = loss + self.weights["global_distill"] * gc
            metrics["global_distill_loss"] = gc.detach()
        return MethodOutput(loss, metrics)

    def export_encoder(self) -> Encoder:
        return Encoder(self.spec, self.trunk)
