"""Spatial-then-Temporal's losses (Li & Liu 2023; spec §9.1, §9.4) as functions shared by the STT
methods and their tests: MoCo's InfoNCE (step 1), and for step 2 the window-masked correlation,
its 2x2 average-pooling into the coarser level's pseudo-label, the entropy-based selection, and the
local and global correlation distillation losses.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """-log exp(q.k+/τ) / (exp(q.k+/τ) + Σ exp(q.k-/τ)); q, k [B, D], queue [K, D], all L2-normalised."""
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.t()
    logits = torch.cat([pos, neg], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def window_mask(h: int, w: int, radius: int, device=None) -> torch.Tensor:
    """Bool [h*w, h*w]: reference cell j lies in the square window |dy|,|dx| <= radius of target cell i
    (clipped at the borders, no padding)."""
    yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    y, x = yy.flatten(), xx.flatten()
    return ((y[:, None] - y[None]).abs() <= radius) & ((x[:, None] - x[None]).abs() <= radius)


def local_correlation(f_t: torch.Tensor, f_r: torch.Tensor, radius: int) -> torch.Tensor:
    """softmax_j(f_t(i).f_r(j)/sqrt(d)) over reference cells inside the window: [B, N, N], rows sum to 1."""
    b, d, h, w = f_t.shape
    s = torch.einsum("bdi,bdj->bij", f_t.flatten(2), f_r.flatten(2)) / math.sqrt(d)
    s = s.masked_fill(~window_mask(h, w, radius, f_t.device), float("-inf"))
    return F.softmax(s, dim=-1)


def pool_correlation(c0: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The finer level's correlation [B, h*w, h*w] -> the coarser level's pseudo-label
    [B, h*w/4, h*w/4]: 2x2 average pooling over the reference grid, then over the target grid (as the
    official code does, so each row sums to 1/4 of the finer rows' sum)."""
    b = c0.shape[0]
    x = F.avg_pool2d(c0.reshape(b * h * w, 1, h, w), 2)                   # reference grid pooled
    n1 = x.shape[-2] * x.shape[-1]
    x = x.reshape(b, h, w, n1).permute(0, 3, 1, 2).reshape(b * n1, 1, h, w)
    x = F.avg_pool2d(x, 2)                                                  # target grid pooled
    return x.reshape(b, n1, n1).transpose(1, 2)


def entropy_selection(f_t: torch.Tensor, f_r: torch.Tensor, displacement: int = 6, fraction: float = 0.7) -> torch.Tensor:
    """Bool [B, N]: the `fraction` of target cells with the largest H_i = Σ_j -log(p_ij + 1e-12) over a
    (2D+1)^2 displacement correlation (no scaling; outside offsets score 0 and stay in the softmax).
    H is the paper's Eq. 6 as coded: a sum of -log p, not Shannon entropy, so it is largest for
    peaked distributions (the many near-zero p dominate), i.e. it keeps the confident matches."""
    from .reconstruct import window_unfold
    b, d, h, w = f_t.shape
    s = torch.einsum("bdq,bdkq->bkq", f_t.flatten(2), window_unfold(f_r, displacement))
    p = F.softmax(s, dim=1)
    ent = (-torch.log(p + 1e-12)).sum(1)                                    # [B, N]
    n = ent.shape[1]
    cut = ent.sort(dim=1, descending=True).values[:, max(0, int(fraction * n) - 1)]
    return (ent > cut[:, None]).detach()


def local_distill_loss(c1: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_i m_i Σ_j (c1_ij - ĉ_ij)^2 / (N Σ_i m_i) with ĉ detached (MMCV's weighted-mean MSE)."""
    n = c1.shape[-1]
    m = mask.to(c1.dtype)
    err = ((c1 - target.detach()) ** 2).sum(-1)
    return (err * m).sum() / (n * m.sum().clamp_min(1.0))


def global_affinity(f_t: torch.Tensor, f_r: torch.Tensor, temperature: "float | None" = None) -> torch.Tensor:
    """softmax_j(f_t(i).f_r(j)/τ) over all cells; τ = sqrt(d) when None (the student's scaling)."""
    d = f_t.shape[1]
    s = torch.einsum("bdi,bdj->bij", f_t.flatten(2), f_r.flatten(2))
    return F.softmax(s / (math.sqrt(d) if temperature is None else temperature), dim=-1)


def global_distill_loss(student_t, student_r, teacher_t, teacher_r, teacher_temperature: float = 0.07) -> torch.Tensor:
    """MSE between the student's global affinity (scaled 1/sqrt(d)) and the frozen teacher's (1/0.07,
    unnormalised features)."""
    a = global_affinity(student_t, student_r)
    with torch.no_grad():
        t = global_affinity(teacher_t, teacher_r, teacher_temperature)
    return F.mse_loss(a, t)
