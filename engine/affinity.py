"""Top-k space-time affinity without the dense (context x pixels x pixels) matrix.

The CRW protocol scores every query cell against (a) every cell of the keyframe (global search) and
(b) the cells within `radius` of it in each short-term context frame.  (a) is one dense matmul per
target.  For (b) the query grid is cut into square tiles; each tile is matched against the key
region that covers all windows of its cells (tile grown by the radius), so the work is a batched
matmul of size O(tiles x tile^2 x region^2) instead of O(N^2), and memory is bounded by chunking
over tiles.  Cells outside a query's window get -inf before the top-k, so the result is the dense
formula's exactly.

Context frames may repeat (CRW pads its short-term memory with copies of the keyframe and counts
every copy as a separate candidate); we score each distinct frame once and replicate its top-k
candidates by the frame's multiplicity, which gives the same joint top-k.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

NEG = float("-inf")


@dataclass
class WindowGeometry:
    """Index maps for the tiled radius window on an h x w grid (all tensors on one device)."""
    h: int
    w: int
    tile: int
    reach: int                 # largest integer offset inside the radius
    query_index: torch.Tensor  # long[ntiles, T*T], N for padding cells
    key_index: torch.Tensor    # long[ntiles, P*P], N for cells outside the grid
    bias: torch.Tensor         # float32[ntiles, T*T, P*P], 0 inside the window, -inf outside

    @property
    def n(self) -> int:
        return self.h * self.w

    @classmethod
    def build(cls, h: int, w: int, radius: float, tile: int, device) -> "WindowGeometry":
        reach = max(0, math.ceil(radius) - 1)
        while (reach + 1) ** 2 < radius ** 2:  # non-integer radius: include every offset < radius
            reach += 1
        side = tile + 2 * reach
        n = h * w
        ty, tx = math.ceil(h / tile), math.ceil(w / tile)
        oy = torch.arange(ty).repeat_interleave(tx) * tile  # tile origins, row-major tiles
        ox = torch.arange(tx).repeat(ty) * tile

        qy = oy[:, None] + torch.arange(tile).repeat_interleave(tile)[None]
        qx = ox[:, None] + torch.arange(tile).repeat(tile)[None]
        q_ok = (qy < h) & (qx < w)
        query_index = torch.where(q_ok, qy * w + qx, torch.full_like(qy, n))

        ky = oy[:, None] - reach + torch.arange(side).repeat_interleave(side)[None]
        kx = ox[:, None] - reach + torch.arange(side).repeat(side)[None]
        k_ok = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
        key_index = torch.where(k_ok, ky * w + kx, torch.full_like(ky, n))

        # Window test in region coordinates is the same for every tile.
        dy = (torch.arange(side).repeat_interleave(side)[None] - reach) - torch.arange(tile).repeat_interleave(tile)[:, None]
        dx = (torch.arange(side).repeat(side)[None] - reach) - torch.arange(tile).repeat(tile)[:, None]
        inside = (dy * dy + dx * dx).double() < float(radius) ** 2  # [T*T, P*P]
        ok = inside[None] & k_ok[:, None, :]
        bias = torch.zeros(ok.shape, dtype=torch.float32).masked_fill_(~ok, NEG)
        return cls(h, w, tile, reach, query_index.to(device), key_index.to(device), bias.to(device))


def _padded(feat: torch.Tensor) -> torch.Tensor:
    """[C, N] -> [N+1, C] with a zero row at N for padding indices."""
    c = feat.shape[0]
    return torch.cat([feat.t(), feat.new_zeros(1, c)], 0)


def dense_topk(query: torch.Tensor, key: torch.Tensor, k: int, chunk: int = 2048):
    """Top-k keys of every query over a whole frame: query [C, N], key [C, M] -> (vals, idx) [N, k]."""
    vals, idxs = [], []
    kt = key
    for s in range(0, query.shape[1], chunk):
        scores = query[:, s:s + chunk].t() @ kt
        v, i = scores.float().topk(min(k, scores.shape[1]), dim=1)
        vals.append(v)
        idxs.append(i)
    return torch.cat(vals), torch.cat(idxs)


def window_topk(query: torch.Tensor, key: torch.Tensor, geo: WindowGeometry, k: int, tiles_per_chunk: int = 16):
    """Top-k keys within the radius window: query, key [C, N] -> (vals, idx) [N, k] (idx = key cell).

    Queries whose window holds fewer than k cells get -inf scores in the missing slots.
    """
    qp, kp = _padded(query), _padded(key)
    n = geo.n
    out_v = query.new_full((n + 1, k), NEG, dtype=torch.float32)
    out_i = torch.full((n + 1, k), n, dtype=torch.long, device=query.device)
    ntiles = geo.query_index.shape[0]
    for s in range(0, ntiles, tiles_per_chunk):
        qi = geo.query_index[s:s + tiles_per_chunk]
        ki = geo.key_index[s:s + tiles_per_chunk]
        q = qp[qi]                       # [t, T*T, C]
        kk = kp[ki]                      # [t, P*P, C]
        scores = torch.bmm(q, kk.transpose(1, 2)).float() + geo.bias[s:s + tiles_per_chunk]
        kk_ = min(k, scores.shape[2])
        v, j = scores.topk(kk_, dim=2)
        cells = torch.gather(ki, 1, j.flatten(1)).view_as(j)
        out_v[qi.flatten(), :kk_] = v.flatten(0, 1)
        out_i[qi.flatten(), :kk_] = cells.flatten(0, 1)
    return out_v[:n], out_i[:n]


def _blocked_topk(scores: torch.Tensor, block: int, k: int):
    """Exact top-k over the last dim, found through block maxima.

    The k largest values lie in the k blocks with the largest maxima (each block holding one of
    them has a maximum at least as large as the k-th value, and at most k blocks can), so a cheap
    max-reduction prunes the expensive top-k to k blocks.  scores [..., M] with M % block == 0.
    Returns (values, positions) [..., k].
    """
    *lead, m = scores.shape
    nb = m // block
    kk = min(k, nb)
    blocks = scores.view(*lead, nb, block)
    _, top_blocks = blocks.amax(-1).topk(kk, dim=-1)                       # [..., kk]
    picked = torch.gather(blocks, -2, top_blocks[..., None].expand(*lead, kk, block))
    v, j = picked.flatten(-2).topk(min(k, kk * block), dim=-1)
    pos = torch.gather(top_blocks, -1, j // block) * block + j % block
    return v, pos


def dense_topk_blocked(query: torch.Tensor, key: torch.Tensor, k: int, row: int, chunk: int = 2048):
    """dense_topk with block pruning; `row` = the key grid's width (a block is one feature row)."""
    vals, idxs = [], []
    for s in range(0, query.shape[1], chunk):
        scores = query[:, s:s + chunk].t() @ key
        v, i = _blocked_topk(scores, row, k)
        vals.append(v.float())
        idxs.append(i)
    return torch.cat(vals), torch.cat(idxs)


class KeyRegions:
    """A context frame's key features laid out per tile region, built once when the frame enters
    the memory and reused for every target that sees it (the layout copy is the costly part)."""

    def __init__(self, key: torch.Tensor, geo: WindowGeometry, dtype):
        self.regions = _padded(key.to(dtype))[geo.key_index]  # [ntiles, P*P, C]


def window_topk_multi(query: torch.Tensor, frames: list, geo: WindowGeometry, k: int, tiles_per_chunk: int = 4):
    """Joint top-k over the radius windows of several context frames (each a KeyRegions).

    Returns (vals float32 [N, k], frame index [N, k], key cell [N, k]); slots that no window can
    fill hold -inf.
    """
    n = geo.n
    dtype = frames[0].regions.dtype
    qp = _padded(query.to(dtype))
    side = geo.key_index.shape[1]
    p = int(round(side ** 0.5))
    bias = geo.bias.to(dtype)
    out_v = torch.full((n + 1, k), NEG, dtype=torch.float32, device=query.device)
    out_f = torch.zeros((n + 1, k), dtype=torch.long, device=query.device)
    out_c = torch.full((n + 1, k), n, dtype=torch.long, device=query.device)
    ntiles = geo.query_index.shape[0]
    buf = None
    for s in range(0, ntiles, tiles_per_chunk):
        e = min(ntiles, s + tiles_per_chunk)
        qi = geo.query_index[s:e]
        q = qp[qi]                                                           # [t, T*T, C]
        t, tq, u = e - s, q.shape[1], len(frames)
        if buf is None or buf.shape[1] != t:
            buf = q.new_empty(u, t, tq, side)
        for j, f in enumerate(frames):
            torch.baddbmm(bias[s:e], q, f.regions[s:e].transpose(1, 2), out=buf[j])
        scores = buf.permute(1, 2, 0, 3).reshape(t, tq, u * side)          # [t, T*T, U*P*P]
        v, pos = _blocked_topk(scores, p, k)
        kk = v.shape[-1]
        frame_id = pos // side
        cells = torch.gather(geo.key_index[s:e], 1, (pos % side).flatten(1)).view_as(pos)
        flat = qi.flatten()
        out_v[flat, :kk] = v.flatten(0, 1).float()
        out_f[flat, :kk] = frame_id.flatten(0, 1)
        out_c[flat, :kk] = cells.flatten(0, 1)
    return out_v[:n], out_f[:n], out_c[:n]


def exact_scores(query: torch.Tensor, keys: list[torch.Tensor], slot: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """Re-score candidates in float32: query [C, N]; candidate (slot, cell) [N, k] -> scores [N, k].

    Padding cells (index N) score 0 here; callers mask them by their -inf coarse score.
    """
    n = query.shape[1]
    out = torch.zeros(slot.shape, dtype=torch.float32, device=query.device)
    rows = torch.arange(slot.shape[0], device=query.device)[:, None].expand_as(slot)
    safe = cell.clamp_max(n - 1)
    for s in slot.unique().tolist():
        sel = slot == s
        k = keys[s][:, safe[sel]].float()          # [C, M]
        q = query[:, rows[sel]].float()            # [C, M]
        out[sel] = (k * q).sum(0)
    return out
