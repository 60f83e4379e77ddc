"""LIIR (Li et al. 2022; spec §8.2, §8.4): MAST's reconstruction with a learnable position encoding,
inter-video negatives in the affinity's denominator and the spatial compactness prior.

Phase 1 (stage `{"inter": false, "compact": false}`) is MAST on the LIIR encoder.  Phase 2 adds:
* a memory bank of `bank_frames` x `bank_points` features from a momentum (EMA, m = 0.999) copy of
  the encoder, computed on the batch's reference frames with the position encoding circularly
  shifted (no gradient) and enqueued FIFO with their video ids; a query never sees negatives of its
  own video;
* the compactness loss (weight `compact_weight`) on the window affinity, masked where the top weight
  is below `compact_threshold` (0.5 in training, the unofficial recipe).
The bank and the EMA encoder are buffers/modules of the method, so checkpoints and resume keep them.
"""
from __future__ import annotations

import copy

import torch

from . import register
from .base import MethodOutput, ema_update
from .liir_parts import compactness_loss, shift_positions, window_affinity_with_negatives
from .mast import MAST, drop_chroma
from .reconstruct import reconstruct, reconstruction_loss


@register
class LIIR(MAST):
    name = "liir"
    family = "reconstruction"
    augmentation = "frames"

    def __init__(self, config: dict):
        super().__init__(config)
        lc = config.get("loss", {})
        self.inter = bool(lc.get("inter", False))
        self.compact = bool(lc.get("compact", False))
        self.momentum = float(lc.get("momentum", 0.999))
        self.points = int(lc.get("bank_points", 4))
        self.compact_weight = float(lc.get("compact_weight", 1.0))
        self.compact_threshold = float(lc.get("compact_threshold", 0.5))
        size = int(lc.get("bank_frames", 1440)) * self.points
        channels = self.spec.channels
        self.key_trunk = copy.deepcopy(self.trunk).requires_grad_(False)
        self.register_buffer("bank", torch.zeros(size, channels))
        self.register_buffer("bank_source", torch.full((size,), -1, dtype=torch.int64))
        self.register_buffer("bank_ptr", torch.zeros((), dtype=torch.int64))

    def set_stage(self, stage: dict) -> None:
        self.inter = bool(stage.get("inter", self.inter))
        self.compact = bool(stage.get("compact", self.compact))

    @torch.no_grad()
    def _enqueue(self, frames: torch.Tensor, sources: torch.Tensor, seeds) -> None:
        """Momentum features of `frames` [B, 3, H, W] with shifted positions -> `points` random cells
        per frame into the FIFO bank."""
        g = torch.Generator().manual_seed(int(seeds[0]) ^ 0xBA4C)
        pe = self.key_trunk.pos_embed1.data.clone()
        self.key_trunk.pos_embed1.data.copy_(shift_positions(pe, g))
        f = self.key_trunk(frames)                                  # [B, C, h, w]
        self.key_trunk.pos_embed1.data.copy_(pe)
        b, c, h, w = f.shape
        idx = torch.randint(0, h * w, (b, self.points), generator=g).to(f.device)
        feats = torch.gather(f.flatten(2), 2, idx[:, None].expand(b, c, self.points)).transpose(1, 2)
        feats, src = feats.reshape(-1, c), sources.repeat_interleave(self.points)
        n, p = self.bank.shape[0], int(self.bank_ptr)
        pos = (p + torch.arange(len(feats), device=f.device)) % n
        self.bank[pos] = feats.float()
        self.bank_source[pos] = src
        self.bank_ptr.fill_((p + len(feats)) % n)

    def forward(self, batch: dict) -> MethodOutput:
        x = batch["clips"]
        seeds = batch["seed"].tolist()
        inputs, chans = drop_chroma(x, seeds)
        f = self.features(inputs)
        idx = torch.arange(x.shape[0], device=x.device)
        y = x[idx, :, chans]
        s = self.spec.stride
        values = y[:, 0:1, ::s, ::s][..., :f.shape[-2], :f.shape[-1]]
        negatives = allowed = None
        if self.inter and self.training:
            sources = batch["source"].to(x.device)
            filled = self.bank_source >= 0
            negatives = self.bank.clone()[None].expand(x.shape[0], -1, -1)   # the bank changes before backward
            allowed = filled[None] & (self.bank_source[None] != sources[:, None])
        metrics = {}
        with torch.autocast(x.device.type, enabled=False):
            w = window_affinity_with_negatives(f[:, 1].float(), f[:, 0].float(), negatives, self.radius, allowed)
            pred = reconstruct(w, values.float(), self.radius)
            loss = reconstruction_loss(pred, y[:, 1:2].float(), self.loss_scale)
            if self.compact:
                com = compactness_loss(w, self.radius, self.compact_threshold)
                loss = loss + self.compact_weight * com
                metrics["compact_loss"] = com.detach()
        metrics["positive_mass"] = w.sum(1).mean().detach()
        if self.inter and self.training:
            ema_update(self.key_trunk, self.trunk, self.momentum)
            self._enqueue(inputs[:, 0], batch["source"].to(x.device), seeds)
        return MethodOutput(loss, metrics)
