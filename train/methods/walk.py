"""Palindrome random-walk arithmetic shared by CRW and JSTG (spec §3.2, §5.3-5.5).

All of it runs in float32 whatever the autocast mode: the -1e20 drop constant, the 1e-20 inside
the log and products of up to 2(T-1) stochastic matrices do not survive fp16/bf16 (quirk §11a-18).

Shapes: node embeddings q [B, C, T, N] (unit vectors along C), node keep masks [B, T, N] (bool).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

DROP = -1e20       # CRW's additive "removed edge" value; a finite number keeps fully dropped rows finite
EPS = 1e-20        # CRW's log(P + 1e-20)


def walk_lengths(clip_len: int, rule: str = "crw") -> list[int]:
    """Forward steps k of the palindromes that are trained.

    "crw": k = 2..T-1, the official code (`range(1, T-1)`; the one-step cycle 0->1->0 is not trained).
    "all": k = 1..T-1, the paper / JSTG Eq. 6 sub-cycles (k = T would need T+1 frames, spec §5.4).
    """
    if rule == "crw":
        ks = list(range(2, clip_len))
    elif rule == "all":
        ks = list(range(1, clip_len))
    else:
        raise ValueError(f"unknown walk-length rule {rule!r}")
    if not ks:
        raise ValueError(f"clip length {clip_len} gives no walk for rule {rule!r}")
    return ks


def edge_drop_masks(seeds: Sequence[int], steps: int, n: int, p: float, device) -> "torch.Tensor | None":
    """Bool [B, steps, 2, N, N]: True = edge dropped, for the forward (0) and backward (1) draw.

    Drawn from a generator per sample seeded with the sample's own seed, so the masks of a clip do
    not depend on which process or step position it lands in (DDP and resume exactness).
    """
    if p <= 0:
        return None
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s) ^ 0x0D7095)
        out.append(torch.rand((steps, 2, n, n), generator=g) < p)
    return torch.stack(out).to(device)


def transitions(q: torch.Tensor, temperature: float, drops: "torch.Tensor | None" = None,
                inherit_drops: bool = True, keep: "torch.Tensor | None" = None):
    """Forward A_t (frame t -> t+1) and backward Ā_t (t+1 -> t) row-stochastic matrices, t = 0..T-2.

    Edge dropout as CRW's code does it (quirk §11a-4): the forward draw is written into the shared
    similarity tensor in place, so the backward step sees those drops transposed plus its own draw
    (`inherit_drops=True`; False gives independent draws).  `keep` [B,T,N] removes nodes (JSTG node
    dropout): a dropped node of frame t is never a destination of a step into frame t.
    """
    q = q.float()
    T = q.shape[2]
    fwd, bwd = [], []
    for t in range(T - 1):
        s = torch.einsum("bcn,bcm->bnm", q[:, :, t], q[:, :, t + 1])
        s_f = s if drops is None else s.masked_fill(drops[:, t, 0], DROP)
        s_b = (s_f if inherit_drops else s).transpose(1, 2)
        if drops is not None:
            s_b = s_b.masked_fill(drops[:, t, 1], DROP)
        if keep is not None:
            s_f = s_f.masked_fill(~keep[:, t + 1, None, :], DROP)
            s_b = s_b.masked_fill(~keep[:, t, None, :], DROP)
        fwd.append(F.softmax(s_f / temperature, dim=-1))
        bwd.append(F.softmax(s_b / temperature, dim=-1))
    return fwd, bwd


def palindrome_walks(fwd, bwd, ks: Sequence[int]) -> dict[int, torch.Tensor]:
    """P_k = A_0 ... A_{k-1} Ā_{k-1} ... Ā_0 for each k in ks: [B, N, N], rows = start nodes of frame 0."""
    out, f, b = {}, None, None
    for k in range(1, max(ks) + 1):
        f = fwd[k - 1] if f is None else f @ fwd[k - 1]
        b = bwd[k - 1] if b is None else bwd[k - 1] @ b
        if k in ks:
            out[k] = f @ b
    return out


def cycle_losses(walks: dict[int, torch.Tensor], start_keep: "torch.Tensor | None" = None):
    """Per walk length: (cross-entropy to the identity, fraction of start nodes whose most likely
    end node is themselves).  Both are means over the kept start nodes of frame 0 ([B, N] mask)."""
    res = {}
    for k, p in walks.items():
        n = p.shape[-1]
        diag = torch.diagonal(p, dim1=1, dim2=2)
        nll = -torch.log(diag + EPS)
        hit = (p.argmax(-1) == torch.arange(n, device=p.device)).float()
        if start_keep is None:
            res[k] = (nll.mean(), hit.mean())
        else:
            w = start_keep.float()
            denom = w.sum().clamp_min(1.0)
            res[k] = ((nll * w).sum() / denom, (hit * w).sum() / denom)
    return res


def reduce_losses(per_k: dict, reduction: str) -> torch.Tensor:
    losses = torch.stack([v[0] for v in per_k.values()])
    if reduction == "mean":       # CRW code: mean over walk lengths
        return losses.mean()
    if reduction == "sum":        # JSTG Eq. 6 / the CRW paper: sum over sub-cycles
        return losses.sum()
    raise ValueError(f"unknown reduction {reduction!r}")


def walk_metrics(per_k: dict) -> dict[str, torch.Tensor]:
    """Logged values: per-k loss/accuracy and `walk_accuracy` = the longest palindrome's accuracy."""
    m = {}
    for k, (loss, acc) in per_k.items():
        m[f"loss_k{k}"] = loss.detach()
        m[f"walk_accuracy_k{k}"] = acc.detach()
    m["walk_accuracy"] = per_k[max(per_k)][1].detach()
    return m
