"""LIIR's additions to the MAST reconstruction (spec §8.2, §8.4), as functions the LIIR method and
its tests share: inter-video negatives in the softmax denominator, circular position shifting for
the negatives' position encoding, and the spatial compactness prior (unofficial recipe, §8.3).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .reconstruct import window_unfold


def window_affinity_with_negatives(f_t: torch.Tensor, f_r: torch.Tensor, negatives: "torch.Tensor | None",
                                   radius: int, allowed: "torch.Tensor | None" = None) -> torch.Tensor:
    """Weights [B, (2R+1)^2, h*w] over the reference window, normalised over the window AND the
    negatives [B, N, C] (features from other videos): A'(i, j) = exp(q_i.r_j) / (sum_j' exp(q_i.r_j')
    + sum_n exp(q_i.n)).  Only the window carries colour, so sum_j A'(i, j) < 1 when negatives get
    mass: the colour lost is what the reconstruction loss punishes (no separate contrastive term).
    `allowed` [B, N] bool drops negatives per sample (those from the query's own video)."""
    b, c, h, w = f_t.shape
    q = f_t.reshape(b, c, h * w)
    pos = torch.einsum("bcq,bcdq->bdq", q, window_unfold(f_r, radius))
    if negatives is None or negatives.shape[1] == 0:
        return F.softmax(pos, dim=1)
    neg = torch.einsum("bcq,bnc->bnq", q, negatives)
    if allowed is not None:
        neg = neg.masked_fill(~allowed[:, :, None], float("-inf"))
    log_z = torch.logsumexp(torch.cat([pos, neg], dim=1), dim=1, keepdim=True)
    return torch.exp(pos - log_z)


def shift_positions(pe: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The position encoding [1, C, H, W] rolled circularly by a random step along y and along x
    (independent draws), without gradient: what LIIR adds to negative frames (its Fig. 4a)."""
    h, w = pe.shape[-2:]
    sy = int(torch.randint(0, h, (1,), generator=generator))
    sx = int(torch.randint(0, w, (1,), generator=generator))
    return torch.roll(pe.detach(), shifts=(sy, sx), dims=(-2, -1))


def compactness_prior(weights: torch.Tensor, radius: int, fwhm: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two isotropic Gaussians at the top-2 entries of each query's window map.

    weights [B, (2R+1)^2, Q] (a softmax over the window) -> (prior Ã of the same shape, v1 [B, Q] the
    top weight).  Means = window coordinates of the two largest weights (detached), mixture weights =
    softmax(v1, v2), Gaussians exp(-4 ln2 d^2 / fwhm^2) with peak 1 (not normalised), as the
    unofficial LIIR code does (the paper gives no formula)."""
    k = 2 * radius + 1
    top = weights.detach().topk(2, dim=1)
    mix = F.softmax(top.values, dim=1)                                   # [B, 2, Q]
    ys = (top.indices // k).float()
    xs = (top.indices % k).float()
    gy = torch.arange(k, dtype=weights.dtype, device=weights.device).repeat_interleave(k)
    gx = torch.arange(k, dtype=weights.dtype, device=weights.device).repeat(k)
    d2 = (gy[None, None, :, None] - ys[:, :, None]) ** 2 + (gx[None, None, :, None] - xs[:, :, None]) ** 2
    g = torch.exp(-4 * math.log(2) * d2 / fwhm ** 2)                      # [B, 2, K*K, Q]
    prior = (mix[:, :, None] * g).sum(1)
    return prior, top.values[:, 0]


def compactness_loss(weights: torch.Tensor, radius: int, threshold: float = 0.5, scale: float = 20.0) -> torch.Tensor:
    """L_com = smooth-L1(20 A mask, 20 Ã mask) over queries whose top weight exceeds `threshold`."""
    prior, v1 = compactness_prior(weights, radius)
    mask = (v1 > threshold).to(weights.dtype)[:, None]
    return F.smooth_l1_loss(scale * weights * mask, scale * prior * mask)
