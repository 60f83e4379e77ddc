"""UVC's Lab colour auto-encoder trained with the framework (spec §6.3): the official training script
is not released and the paper says only "reconstruct images in the Lab space" (on MS-COCO); here an
L1 reconstruction of 8-bit Lab frames in [-1, 1] (our choice, the spec's suggestion) on frames of the
training videos treated as still images.  The result is frozen inside UVC/ContrastCorr: give the
checkpoint as their config's `autoencoder`.  It is not a correspondence model, so the engine refuses
to open it as one.
"""
from __future__ import annotations

import torch

from . import register
from .base import Method, MethodOutput
from .uvc_parts import LabAutoEncoder, lab_psnr


@register
class UvcAutoEncoder(Method):
    name = "uvc_ae"
    family = "transformation"
    augmentation = "frames"

    def __init__(self, config: dict):
        super().__init__(config)
        self.ae = LabAutoEncoder()

    def forward(self, batch: dict) -> MethodOutput:
        lab = batch["clips"].flatten(0, 1)                 # [B, T, 3, H, W] -> frames as still images
        rec = self.ae(lab)
        loss = (rec.float() - lab.float()).abs().mean()
        with torch.no_grad():
            psnr = lab_psnr(rec, lab).mean()
        return MethodOutput(loss, {"psnr_db": psnr})
