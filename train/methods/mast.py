"""MAST baseline (Lai et al. 2020; spec §4.2): reconstruct a dropped chroma channel of the target
frame from the reference frame through a local-window softmax over stride-4 features.

Input: float Lab normalised with (50, 0, 0) / (50, 127, 127) (pipeline `frames`, colour "lab").  Per
sample, one of a/b is zeroed in the inputs of both frames and the inputs are multiplied by 3/2 (the
official `dropout2d_lab` draws one channel per batch; per sample, seeded by the sample's own seed,
keeps a clip's training independent of its batch neighbours and of DDP/resume).  The target is that
channel of the unmodified frame, subsampled [::4, ::4] for the values and at full resolution for the
loss.  Clips of 2 frames = (reference, target).
Deviation (documented): the official frame gap is drawn from {2, 5, 8}; here it is the data
pipeline's `fps` (one gap per source), see configs/mast.json.
"""
from __future__ import annotations

import torch

from . import register
from .base import Method, MethodOutput
from .reconstruct import reconstruct, reconstruction_loss, window_affinity


def drop_chroma(x: torch.Tensor, seeds) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, T, 3, H, W] normalised Lab -> (inputs with a or b zeroed per sample and x1.5, channel [B])."""
    chans = torch.tensor([1 + int(torch.randint(0, 2, (1,), generator=torch.Generator().manual_seed(int(s) ^ 0xC4A0)))
                          for s in seeds], device=x.device)
    keep = torch.ones(x.shape[0], 1, 3, 1, 1, dtype=x.dtype, device=x.device)
    keep[torch.arange(x.shape[0]), 0, chans] = 0
    return x * keep * 1.5, chans


@register
class MAST(Method):
    name = "mast"
    family = "reconstruction"
    augmentation = "frames"

    def __init__(self, config: dict):
        super().__init__(config)
        lc = config.get("loss", {})
        self.radius = int(lc.get("radius", 6))
        self.loss_scale = float(lc.get("scale", 20.0))
        self.trunk, _ = self.build_training_trunk(None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] -> [B, T, C, H/4, W/4]."""
        b, t = x.shape[:2]
        f = self.trunk(x.flatten(0, 1))
        return f.view(b, t, *f.shape[1:])

    def forward(self, batch: dict) -> MethodOutput:
        x = batch["clips"]                                   # [B, 2, 3, H, W] normalised Lab
        inputs, chans = drop_chroma(x, batch["seed"].tolist())
        f = self.features(inputs)
        idx = torch.arange(x.shape[0], device=x.device)
        y = x[idx, :, chans]                                 # [B, 2, H, W] normalised dropped channel
        s = self.spec.stride
        values = y[:, 0:1, ::s, ::s][..., :f.shape[-2], :f.shape[-1]]
        with torch.autocast(x.device.type, enabled=False):
            w = window_affinity(f[:, 1].float(), f[:, 0].float(), self.radius)
            pred = reconstruct(w, values.float(), self.radius)
            loss = reconstruction_loss(pred, y[:, 1:2].float(), self.loss_scale)
        peak = w.max(dim=1).values.mean()
        return MethodOutput(loss, {"attention_peak": peak.detach()})
