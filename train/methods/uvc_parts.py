"""UVC's pieces (Li et al. 2019; spec §6), shared by the UVC and ContrastCorr methods and their tests:
the frozen Lab colour auto-encoder (published weights load as they are), colour transport through
an affinity, the weighted Lab L1 loss, the concentration terms, and the region-level localisation
(soft-argmax centre, fixed-size box, differentiable crop).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import CheckpointError


def _pad_conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.ReLU(inplace=True)]


class LabEncoder(nn.Module):
    """UVC `encoder3(reduce=True)`: 3-channel Lab in [-1, 1] -> 256 channels at stride 8."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 1)
        self.conv2, self.conv3 = nn.Conv2d(3, 64, 3), nn.Conv2d(64, 64, 3)
        self.conv4, self.conv5 = nn.Conv2d(64, 128, 3), nn.Conv2d(128, 128, 3)
        self.conv6 = nn.Conv2d(128, 256, 3)
        self.downsample = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(256, 256, 1), nn.ReLU(inplace=True))

    def forward(self, x):
        c = lambda conv, v: F.relu(conv(F.pad(v, (1, 1, 1, 1), mode="reflect")))  # noqa: E731
        x = self.conv1(x)
        x = F.max_pool2d(c(self.conv3, c(self.conv2, x)), 2)
        x = F.max_pool2d(c(self.conv5, c(self.conv4, x)), 2)
        return self.downsample(c(self.conv6, x))


class LabDecoder(nn.Module):
    """UVC `decoder3(reduce=True)`: 256 channels at stride 8 -> Lab in [-1, 1] (tanh)."""

    def __init__(self):
        super().__init__()
        self.upsample = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(256, 256, 1),
                                      nn.ReLU(inplace=True))
        self.conv7, self.conv8 = nn.Conv2d(256, 128, 3), nn.Conv2d(128, 128, 3)
        self.conv9, self.conv10 = nn.Conv2d(128, 64, 3), nn.Conv2d(64, 64, 3)
        self.conv11 = nn.Conv2d(64, 3, 3)

    def forward(self, x):
        p = lambda v: F.pad(v, (1, 1, 1, 1), mode="reflect")  # noqa: E731
        up = lambda v: F.interpolate(v, scale_factor=2, mode="nearest")  # noqa: E731
        x = F.relu(self.conv7(p(self.upsample(x))))
        x = F.relu(self.conv9(p(F.relu(self.conv8(p(up(x)))))))
        x = F.relu(self.conv10(p(up(x))))
        return torch.tanh(self.conv11(p(x)))


class LabAutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.decoder = LabEncoder(), LabDecoder()

    def forward(self, lab):
        return self.decoder(self.encoder(lab))

    @classmethod
    def load(cls, path) -> "LabAutoEncoder":
        """A folder of UVC's published weights, or a checkpoint of our `uvc_ae` training method."""
        path = Path(path)
        return cls.published(path) if path.is_dir() or not path.exists() else cls.trained(path)

    @classmethod
    def trained(cls, path) -> "LabAutoEncoder":
        """The auto-encoder of an `affinity-train --method uvc_ae` checkpoint (frozen)."""
        from engine.models.checkpoints import read_checkpoint
        ck = read_checkpoint(path)
        if ck.get("method") != "uvc_ae":
            raise CheckpointError(path, f"is a {ck.get('method')!r} checkpoint, not a uvc_ae auto-encoder")
        sd = {k[len("ae."):]: v for k, v in (ck.get("train_state") or {}).get("model", {}).items()
              if k.startswith("ae.")}
        ae = cls()
        try:
            ae.load_state_dict(sd)
        except RuntimeError as exc:
            raise CheckpointError(path, f"its auto-encoder weights do not fit ({exc})") from None
        return ae.eval().requires_grad_(False)

    @classmethod
    def published(cls, folder) -> "LabAutoEncoder":
        """UVC's released `encoder_single_gpu.pth` / `decoder_single_gpu.pth`, loaded strictly."""
        ae = cls()
        for part, name in ((ae.encoder, "encoder_single_gpu.pth"), (ae.decoder, "decoder_single_gpu.pth")):
            path = Path(folder) / name
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
                part.load_state_dict(sd)
            except FileNotFoundError:
                raise CheckpointError(path, "not found") from None
            except (RuntimeError, KeyError) as exc:
                raise CheckpointError(path, f"is not UVC's Lab auto-encoder ({exc})") from None
        return ae.eval().requires_grad_(False)


def lab8(rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 [H, W, 3] -> OpenCV 8-bit Lab normalised (x - 128) / 128, [3, H, W] (spec §6.2)."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    return torch.from_numpy((lab - 128.0) / 128.0).permute(2, 0, 1).contiguous()


def lab_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of Lab tensors in [-1, 1] (a value range of 2): [B]."""
    mse = ((pred.float() - target.float()) ** 2).flatten(1).mean(1) / 4
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def pair_scores(f_r: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Raw scores F_r^T F_t [B, N_r, N_t] of feature maps [B, C, h, w], always float32: at tau 1 on
    unnormalised features (|s| ~ 10^3) bf16's 8-bit mantissa would shift every score by several
    units and scramble the softmax, so the trainer's autocast is switched off here."""
    with torch.autocast(f_r.device.type, enabled=False):
        return torch.einsum("bcr,bct->brt", f_r.float().flatten(2), f_t.float().flatten(2))


def transport(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """values [B, C, N_r] carried by column-normalised weights [B, N_r, N_t] -> [B, C, N_t]."""
    return torch.bmm(values, weights)


def lab_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean|L| + 10 mean|a| + 10 mean|b| in normalised Lab: [B]."""
    d = (pred - target).abs().mean(dim=(2, 3))
    return d[:, 0] + 10 * d[:, 1] + 10 * d[:, 2]


def grid_coords(h: int, w: int, device=None) -> torch.Tensor:
    """[2, h*w] (x, y) of each cell in [-1, 1], corners at +-1."""
    ys = torch.linspace(-1, 1, h, device=device)
    xs = torch.linspace(-1, 1, w, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()])


def concentration_spread(weights: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Mean over queries of the weighted squared distance of each query's affinity [B, N_r, N_t] (a
    distribution over the h x w reference grid per column) from its own mean: 0 for one-hot columns,
    larger the more the mass spreads (the paper's concentration idea, UVC Eq. 6 without truncation)."""
    g = grid_coords(h, w, weights.device)                                      # [2, N_r]
    mean = torch.einsum("cn,bnq->bcq", g, weights)
    sq = torch.einsum("n,bnq->bq", (g ** 2).sum(0), weights)
    return (sq - (mean ** 2).sum(1)).clamp_min(0).mean()


def concentration_windows(scores: torch.Tensor, h: int, w: int, window: int = 8, temperature: float = 1.0) -> torch.Tensor:
    """UVC's released `ConcentrationSwitchLoss` (spec §6.7): the expected coordinates of both
    directions' softmaxes, their squared deviation from the mean of each non-overlapping
    window x window block, summed over both maps and divided by one map's element count."""
    b = scores.shape[0]
    g = grid_coords(h, w, scores.device)
    total = 0.0
    for s in (scores, scores.transpose(1, 2)):
        phi = torch.einsum("cn,bnq->bcq", g, F.softmax(temperature * s, dim=1)).view(b, 2, h, w)
        blocks = F.unfold(phi, window, stride=window).view(b, 2, window * window, -1)
        total = total + ((blocks - blocks.mean(2, keepdim=True)) ** 2).sum()
    return total / (b * 2 * window * window * blocks.shape[-1])


def locate(scores: torch.Tensor, h: int, w: int, temperature: float = 1.0) -> torch.Tensor:
    """Centre [B, 2] (x, y in target cells) of a reference patch in the target: every reference cell's
    expected position under softmax over the target axis of scores [B, N_r, N_t], averaged (UVC Eq. 3)."""
    p = F.softmax(temperature * scores, dim=2)
    g = (grid_coords(h, w, scores.device) + 1) / 2 * torch.tensor([[w - 1], [h - 1]], device=scores.device,
                                                                  dtype=scores.dtype)
    return torch.einsum("cq,bnq->bnc", g, p).mean(1)


def box_around(centre: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """A size x size cell box [B, 4] (x0, y0, x1, y1) centred on `centre`, shifted inside the map."""
    half = size / 2
    x0 = (centre[:, 0] - half + 0.5).clamp(0, max(0, w - size))
    y0 = (centre[:, 1] - half + 0.5).clamp(0, max(0, h - size))
    return torch.stack([x0, y0, x0 + size, y0 + size], 1)


def diff_crop(x: torch.Tensor, box: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear crop of x [B, C, H, W] to `size` over box [B, 4] in cell units (differentiable in the
    box: gradients reach whatever located it)."""
    b, _, hh, ww = x.shape
    x0, y0, x1, y1 = box.unbind(1)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = (x1 - x0) / ww
    theta[:, 0, 2] = (x0 + x1) / ww - 1
    theta[:, 1, 1] = (y1 - y0) / hh
    theta[:, 1, 2] = (y0 + y1) / hh - 1
    grid = F.affine_grid(theta, (b, x.shape[1], *size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", align_corners=False)


def batch_affinity(f_t: torch.Tensor, f_r: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """ContrastCorr's inter-video affinity: every target position of every video of the batch against
    every reference position of every video, row-softmax -> [B*N_t, B*N_r]."""
    b, c = f_t.shape[:2]
    q = f_t.flatten(2).transpose(1, 2).reshape(-1, c)
    k = f_r.flatten(2).transpose(1, 2).reshape(-1, c)
    return F.softmax(temperature * q @ k.t(), dim=1)


def negative_mass(affinity: torch.Tensor, b: int) -> torch.Tensor:
    """L_sparse: mean over rows of the affinity mass on other videos' positions (1 - positive mass)."""
    n_t, n_r = affinity.shape[0] // b, affinity.shape[1] // b
    same = torch.block_diag(*[torch.ones(n_t, n_r, device=affinity.device)] * b).bool()
    return (affinity * ~same).sum(1).mean()


def inter_transport(affinity: torch.Tensor, e_r: torch.Tensor) -> torch.Tensor:
    """Colour features e_r [B, C, h, w] of all references carried to every target: [B, C, h_t*w_t]."""
    b, c = e_r.shape[:2]
    values = e_r.flatten(2).transpose(1, 2).reshape(-1, c)            # [B*N_r, C]
    out = affinity @ values                                             # [B*N_t, C]
    return out.view(b, -1, c).transpose(1, 2)
