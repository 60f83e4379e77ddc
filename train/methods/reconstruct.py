"""Colour reconstruction through a local-window affinity: the operation the reconstruction family
(MAST, LIIR, STT) learns correspondence with (spec §4.2).

For every target cell q, scores s(q, δ) = <f_t[q], f_r[q+δ]> over the (2R+1)^2 offsets δ of a square
window (plain dot products; offsets outside the image score 0 and carry value 0, as MAST's
zero-padded correlation sampler does), softmax over the window, and the prediction is the weighted
sum of the reference values at q+δ.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def window_unfold(x: torch.Tensor, radius: int) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, (2R+1)^2, h*w]: x at q+δ for every cell q and offset δ (zero outside)."""
    b, c, h, w = x.shape
    k = 2 * radius + 1
    return F.unfold(x, kernel_size=k, padding=radius).view(b, c, k * k, h * w)


def window_affinity(f_t: torch.Tensor, f_r: torch.Tensor, radius: int, temperature: float = 1.0) -> torch.Tensor:
    """Softmax weights [B, (2R+1)^2, h*w] of each target cell over its window in the reference."""
    b, c, h, w = f_t.shape
    scores = torch.einsum("bcq,bcdq->bdq", f_t.reshape(b, c, h * w), window_unfold(f_r, radius))
    return F.softmax(scores / temperature, dim=1)


def reconstruct(weights: torch.Tensor, values: torch.Tensor, radius: int) -> torch.Tensor:
    """Weighted copy of reference `values` [B, K, h, w] through window weights -> [B, K, h, w]."""
    b, k, h, w = values.shape
    out = torch.einsum("bdq,bkdq->bkq", weights, window_unfold(values, radius))
    return out.view(b, k, h, w)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """MAST's loss: bilinear upsampling of the cell prediction to the target's size, then
    SmoothL1(scale*pred, scale*target) averaged over pixels (beta 1)."""
    up = F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.smooth_l1_loss(scale * up, scale * target)
