"""UVC (Li et al. 2019; spec §6) and ContrastCorr (Wang et al. 2021; spec §7) on the one trainer.

UVC: a ResNet-18 (layer3/4 at stride 1, 512-d at stride 8) sees the L channel; the frozen Lab
auto-encoder's features of the reference are carried to the target through A = softmax over the
reference axis of F_r^T F_t and decoded (colour reconstruction), with the switched direction
(weight 0.1), the 2.5 outlier threshold and the concentration term (x0.3).  Stage `joint`: the
reference patch is first located in the whole target (soft-argmax centre, fixed box, differentiable
crop of the target's features, colour features and image) and matched against the crop.
ContrastCorr: all three Lab channels with channel dropout, self-reconstruction of the reference, and
in the joint stage the inter-video affinity over the batch: consistency of the inter-video
reconstruction with the intra-video one, and the sparsity of the mass on other videos.
The auto-encoder comes from `autoencoder` (a folder with UVC's published weights, or a `uvc_ae`
checkpoint of ours); null gives a
seeded random frozen one, for smoke tests only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.models import specs

from . import register
from .base import Method, MethodOutput
from .uvc_parts import (LabAutoEncoder, batch_affinity, box_around, concentration_windows, diff_crop, inter_transport,
                        lab_l1, locate, negative_mass, pair_scores, transport)

IMAGENET_MEAN = torch.tensor(specs.IMAGENET_MEAN).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor(specs.IMAGENET_STD).view(1, 3, 1, 1)


@register
class UVC(Method):
    name = "uvc"
    family = "transformation"
    augmentation = "uvc_pair"

    def __init__(self, config: dict):
        super().__init__(config)
        lc = config.get("loss", {})
        self.switch = float(lc.get("colour_switch", 0.1))
        self.outlier = lc.get("outlier_threshold", 2.5)
        self.concentration = float(lc.get("concentration", 0.3))
        self.joint = bool(lc.get("joint", False))
        self.trunk, _ = self.build_training_trunk(None)
        path = config.get("autoencoder")
        self.ae = LabAutoEncoder.load(path) if path else LabAutoEncoder().eval().requires_grad_(False)

    def set_stage(self, stage: dict) -> None:
        for key in ("joint", "concentration", "outlier_threshold"):
            if key in stage:
                setattr(self, {"outlier_threshold": "outlier"}.get(key, key), stage[key])

    def train(self, mode: bool = True):
        super().train(mode)
        self.ae.eval()
        return self

    def encoder_input(self, lab: torch.Tensor, seeds=None) -> torch.Tensor:
        """The L channel x3, (x+1)/2, ImageNet normalisation (spec §6.2)."""
        x = (lab[:, :1].expand(-1, 3, -1, -1) + 1) / 2
        return (x - IMAGENET_MEAN.to(x)) / IMAGENET_STD.to(x)

    def colour_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample Lab L1 with the outlier rejection (samples above the threshold count 0): [B]."""
        v = lab_l1(pred, target)
        if self.outlier is not None:
            v = torch.where(v > float(self.outlier), torch.zeros_like(v), v)
        return v

    def match(self, f_r, f_t, e_r, e_t):
        """Intra-video transformation: (scores, Î_t, Î_r)."""
        b, c, h, w = f_t.shape
        s = pair_scores(f_r, f_t)
        a = F.softmax(s, dim=1)
        i_t = self.ae.decoder(transport(a, e_r.flatten(2)).view(b, -1, h, w))
        i_r = self.ae.decoder(transport(a.transpose(1, 2), e_t.flatten(2)).view(b, -1, *f_r.shape[-2:]))
        return s, i_t, i_r

    def targets(self, batch, f_r, seeds):
        """(target features, colour features, image) the reference is matched against."""
        if not self.joint:
            lab = batch["tgt_lab"]
            return self.trunk(self.encoder_input(lab, seeds)), self.ae.encoder(lab), lab
        full = batch["tgt_full_lab"]
        f_full = self.trunk(self.encoder_input(full, seeds))
        h, w = f_full.shape[-2:]
        pc = f_r.shape[-1]
        centre = locate(pair_scores(f_r, f_full), h, w)
        box = box_around(centre, pc, h, w)
        size = (pc, pc)
        stride = full.shape[-1] // w
        return (diff_crop(f_full, box, size), diff_crop(self.ae.encoder(full), box, size),
                diff_crop(full, box * stride, tuple(stride * p for p in size)))

    def forward(self, batch: dict) -> MethodOutput:
        ref = batch["ref_lab"]
        seeds = batch["seed"].tolist()
        f_r = self.trunk(self.encoder_input(ref, seeds))
        f_t, e_t, img_t = self.targets(batch, f_r, seeds)
        with torch.no_grad():
            e_r = self.ae.encoder(ref)
        with torch.autocast(ref.device.type, enabled=False):
            s, i_t, i_r = self.match(f_r.float(), f_t.float(), e_r.float(), e_t.float())
            colour = self.colour_loss(i_t, img_t) + self.switch * self.colour_loss(i_r, ref)
            loss = colour.mean()
            metrics = {"colour_loss": loss.detach()}
            if self.concentration > 0:
                con = concentration_windows(s, *f_r.shape[-2:])
                loss = loss + self.concentration * con
                metrics["concentration"] = con.detach()
            extra = self.extra_losses(batch, f_r.float(), f_t.float(), e_r.float(), i_t, ref, seeds)
        for k, v in extra.items():
            loss = loss + v
            metrics[k] = v.detach()
        return MethodOutput(loss, metrics)

    def extra_losses(self, batch, f_r, f_t, e_r, i_t, ref, seeds) -> dict:
        return {}


def channel_dropout(x: torch.Tensor, seeds) -> torch.Tensor:
    """ContrastCorr's `dropout2d` per sample (seeded): with p 0.3 nothing, else zero k in {1, 2}
    random channels and multiply by 3/(3-k).  x [B, 3, H, W] (both frames of a pair share it)."""
    out = x.clone()
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s) ^ 0xD409)
        if float(torch.rand(1, generator=g)) < 0.3:
            continue
        k = 1 + int(torch.randint(0, 2, (1,), generator=g))
        chans = torch.randperm(3, generator=g)[:k]
        out[i, chans] = 0
        out[i] *= 3 / (3 - k)
    return out


@register
class ContrastCorr(UVC):
    name = "contrastcorr"
    family = "transformation"
    augmentation = "uvc_pair"

    def __init__(self, config: dict):
        super().__init__(config)
        lc = config.get("loss", {})
        self.self_reconstruction = float(lc.get("self_reconstruction", 1.0))
        self.consistency = float(lc.get("intra_inter", 1.0))
        self.sparsity = float(lc.get("sparsity", 1.0))

    def encoder_input(self, lab: torch.Tensor, seeds=None) -> torch.Tensor:
        x = (lab + 1) / 2
        x = (x - IMAGENET_MEAN.to(x)) / IMAGENET_STD.to(x)
        return channel_dropout(x, seeds) if (self.training and seeds is not None) else x

    def extra_losses(self, batch, f_r, f_t, e_r, i_t, ref, seeds) -> dict:
        b, c, h, w = f_r.shape
        out = {}
        if self.self_reconstruction > 0:   # the reference rebuilt from itself, its own cells excluded
            s = pair_scores(f_r, f_r)
            s = s - 1e10 * torch.eye(h * w, device=s.device)
            i_self = self.ae.decoder(transport(F.softmax(s, dim=1), e_r.flatten(2)).view(b, -1, h, w))
            out["self_reconstruction"] = self.self_reconstruction * self.colour_loss(i_self, ref).mean()
        if self.joint and b > 1:
            aff = batch_affinity(f_t, f_r)
            i_inter = self.ae.decoder(inter_transport(aff, e_r).view(b, -1, *f_t.shape[-2:]))
            out["intra_inter"] = self.consistency * self.colour_loss(i_inter, i_t).mean()
            out["sparsity"] = self.sparsity * negative_mass(aff, b)
        return out
