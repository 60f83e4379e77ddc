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
    def build(cls, h: int, w: int, radius: float, tile: int, device, shape: str = "circle",
              border: str = "mask") -> "WindowGeometry":
        """shape "circle": offsets with dy^2 + dx^2 < radius^2 (CRW, strict); "square": |dy|, |dx| <=
        radius (MAST/LIIR/STT).  border "mask": window cells outside the grid are no candidates;
        "zero": they stay in the window and score 0 against the zero padding row (MAST's zero-padded
        correlation, spec §11a-13), so they take softmax mass but carry no label."""
        if shape not in ("circle", "square") or border not in ("mask", "zero"):
            raise ValueError(f"window shape {shape!r} / border {border!r}")
        if shape == "square":
            reach = int(math.floor(radius))
        else:
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
        if shape == "square":
            inside = (dy.abs() <= reach) & (dx.abs() <= reach)   # [T*T, P*P]
        else:
            inside = (dy * dy + dx * dx).double() < float(radius) ** 2
        ok = inside[None] & (k_ok if border == "mask" else torch.ones_like(k_ok))[:, None, :]
        bias = torch.zeros(ok.shape, dtype=torch.float32).masked_fill_(~ok, NEG)
        return cls(h, w, tile, reach, query_index.to(device), key_index.to(device), bias.to(device))

    def region_offsets(self) -> torch.Tensor:
        """float32 [T*T, P*P, 2]: (dy, dx) of each region cell from each tile cell (for the prior)."""
        side = self.key_index.shape[1]
        p = int(round(side ** 0.5))
        ry = torch.arange(p).repeat_interleave(p) - self.reach
        rx = torch.arange(p).repeat(p) - self.reach
        ty = torch.arange(self.tile).repeat_interleave(self.tile)
        tx = torch.arange(self.tile).repeat(self.tile)
        return torch.stack([ry[None] - ty[:, None], rx[None] - tx[:, None]], -1).float().to(self.bias.device)


def _padded(feat: torch.Tensor) -> torch.Tensor:
    """[C, N] -> [N+1, C] with a zero row at N for padding indices."""
    c = feat.shape[0]
    return torch.cat([feat.t(), feat.new_zeros(1, c)], 0)


_INT_VIEW = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


def block_max(x: torch.Tensor) -> torch.Tensor:
    """Exact maximum over the last dim, computed on the bit patterns.

    Float reductions are several times slower on CPU than integer ones (measured 3.3 vs 0.8 ms on a
    cached bf16 chunk).  Read as signed integers, non-negative floats keep their order and negative
    ones reverse it (-inf is the largest negative integer), so the float maximum is the integer
    maximum when that is non-negative and otherwise the integer minimum.  No NaNs occur here.
    """
    ints = x.view(_INT_VIEW[x.dtype])
    hi = ints.amax(-1)
    return torch.where(hi >= 0, hi, ints.amin(-1)).view(x.dtype)


def top_blocks(blocks: torch.Tensor, k: int, arrange=lambda m: m) -> torch.Tensor:
    """Indices [..., k] of the k blocks (last-but-one dim) with the largest maxima; `arrange`
    reshapes the block maxima into [..., blocks] first (cheaper than rearranging the blocks).

    The integer maximum alone orders every block holding a non-negative value correctly and puts
    all-negative blocks below them; when each row's k-th pick is non-negative that is the exact
    answer (always, for the cosine scores of ReLU features), otherwise the exact maxima decide.
    """
    hi = arrange(blocks.view(_INT_VIEW[blocks.dtype]).amax(-1))
    v, idx = hi.topk(k, dim=-1)
    if bool((v[..., -1] < 0).any()):
        _, idx = arrange(block_max(blocks)).topk(k, dim=-1)
    return idx


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
    best = top_blocks(blocks, kk)                                            # [..., kk]
    picked = torch.gather(blocks, -2, best[..., None].expand(*lead, kk, block))
    v, j = picked.flatten(-2).topk(min(k, kk * block), dim=-1)
    pos = torch.gather(best, -1, j // block) * block + j % block
    return v, pos


def dense_topk_blocked(query: torch.Tensor, key: torch.Tensor, k: int, row: int, chunk: int = 1024):
    """dense_topk with block pruning; `row` = the key grid's width (a block is one feature row)."""
    vals, idxs = [], []
    for s in range(0, query.shape[1], chunk):
        scores = query[:, s:s + chunk].t() @ key
        v, i = _blocked_topk(scores, row, k)
        vals.append(v.float())
        idxs.append(i)
    return torch.cat(vals), torch.cat(idxs)


# Above this many bytes per context frame the tile-region layout is gathered chunk by chunk instead
# of kept: large windows (STT stride 4, half-width 35) repeat every key ~50 times, which at 480p is
# ~0.6 GB per frame and ~13 GB for STT's 21 references.
REGION_CACHE_BYTES = 64 * 2 ** 20


class KeyRegions:
    """A context frame's key features laid out per tile region, built once when the frame enters
    the memory and reused for every target that sees it (the layout copy is the costly part), unless
    that layout would exceed `REGION_CACHE_BYTES`: then each chunk of tiles is gathered when used
    (the same values, memory O(N x C) per frame)."""

    def __init__(self, key: torch.Tensor, geo: WindowGeometry, dtype, cache_bytes: "int | None" = None):
        padded = _padded(key.to(dtype))
        size = geo.key_index.numel() * padded.shape[1] * padded.element_size()
        if size > (REGION_CACHE_BYTES if cache_bytes is None else cache_bytes):
            self.regions = _GatheredRegions(padded, geo.key_index)
        else:
            # index_select, not fancy indexing: measured 0.7 vs 4.3 ms per frame.
            self.regions = padded.index_select(0, geo.key_index.flatten()).view(*geo.key_index.shape, -1)  # [ntiles, P*P, C]


class _GatheredRegions:
    """`regions[s:e]` of KeyRegions, gathered on demand from the padded keys."""

    def __init__(self, padded: torch.Tensor, key_index: torch.Tensor):
        self.padded, self.key_index, self.dtype = padded, key_index, padded.dtype

    def __getitem__(self, tiles: slice) -> torch.Tensor:
        idx = self.key_index[tiles]
        return self.padded.index_select(0, idx.flatten()).view(*idx.shape, -1)


def window_topk_multi(query: torch.Tensor, frames: list, geo: WindowGeometry, k: int, tiles_per_chunk: int = 2):
    """Joint top-k over the radius windows of several context frames (each a KeyRegions).

    Returns (vals float32 [N, k], frame index [N, k], key cell [N, k]); slots that no window can
    fill hold -inf.  Per chunk of tiles the scores of all frames land in one buffer
    [frames, tiles, T*T, P, P]; region rows are the pruning blocks, so only the row maxima are
    rearranged across frames and the full score buffer is read just twice (maxima, then the
    chosen rows).
    """
    n = geo.n
    dtype = frames[0].regions.dtype
    dev = query.device
    qp = _padded(query.to(dtype))
    side = geo.key_index.shape[1]
    p = int(round(side ** 0.5))
    bias = geo.bias.to(dtype)
    out_v = torch.full((n + 1, k), NEG, dtype=torch.float32, device=dev)
    out_f = torch.zeros((n + 1, k), dtype=torch.long, device=dev)
    out_c = torch.full((n + 1, k), n, dtype=torch.long, device=dev)
    ntiles = geo.query_index.shape[0]
    u = len(frames)
    kk = min(k, u * p)
    buf = None
    for s in range(0, ntiles, tiles_per_chunk):
        e = min(ntiles, s + tiles_per_chunk)
        qi = geo.query_index[s:e]
        q = qp[qi]                                                           # [t, T*T, C]
        t, tq = e - s, q.shape[1]
        if buf is None or buf.shape[1] != t:
            buf = q.new_empty(u, t, tq, side)
            ti = torch.arange(t, device=dev)[:, None, None]
            qq = torch.arange(tq, device=dev)[None, :, None]
        for j, f in enumerate(frames):
            torch.baddbmm(bias[s:e], q, f.regions[s:e].transpose(1, 2), out=buf[j])
        rows = buf.view(u, t, tq, p, p)
        top_rows = top_blocks(rows, kk, lambda m: m.permute(1, 2, 0, 3).reshape(t, tq, u * p))  # [t, T*T, kk]
        frame_of, row_of = top_rows // p, top_rows % p
        picked = rows.reshape(-1, p).index_select(0, (((frame_of * t + ti) * tq + qq) * p + row_of).flatten())
        picked = picked.view(t, tq, kk, p)                                   # [t, T*T, kk, P]
        v, jj = picked.flatten(-2).topk(kk, dim=-1)
        sel = jj // p
        frame_id = torch.gather(frame_of, -1, sel)
        region_cell = torch.gather(row_of, -1, sel) * p + jj % p
        cells = torch.gather(geo.key_index[s:e], 1, region_cell.flatten(1)).view_as(region_cell)
        flat = qi.flatten()
        out_v[flat, :kk] = v.flatten(0, 1).float()
        out_f[flat, :kk] = frame_id.flatten(0, 1)
        out_c[flat, :kk] = cells.flatten(0, 1)
    return out_v[:n], out_f[:n], out_c[:n]


def exact_scores(query_rows: torch.Tensor, key_rows: list[torch.Tensor], slot: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """Re-score candidates in float32: query_rows [N, C]; key_rows[s] [N, C] per slot; candidate
    (slot, cell) [N, k] -> scores [N, k].

    Candidates are grouped by slot with one sort so that each frame's rows are read with one
    contiguous index_select (column gathers from [C, N] layouts were the slow part).  Padding
    cells (index N) score 0 here; callers mask them by their -inf coarse score.
    """
    n, k = slot.shape
    flat_slot = slot.flatten()
    order = torch.argsort(flat_slot, stable=True)
    counts = torch.bincount(flat_slot, minlength=len(key_rows)).tolist()
    query_index = order // k
    cells = cell.flatten()[order].clamp_max(n - 1)
    out = torch.empty(n * k, dtype=torch.float32, device=slot.device)
    scores = []
    pos = 0
    for s, c in enumerate(counts):
        if c:
            q = query_rows.index_select(0, query_index[pos:pos + c]).float()
            kk = key_rows[s].index_select(0, cells[pos:pos + c]).float()
            scores.append((q * kk).sum(1))
        pos += c
    out[order] = torch.cat(scores)
    return out.view(n, k)


# -- protocols other than CRW's (engine/protocols.py) ------------------------------------------

def row_regions(rows: torch.Tensor, geo: WindowGeometry) -> torch.Tensor:
    """Per-cell rows [N, K] (e.g. labels) laid out per tile region [ntiles, P*P, K]; cells outside
    the grid get zero rows (MAST's zero padding: no label)."""
    padded = torch.cat([rows, rows.new_zeros(1, rows.shape[1])], 0)
    return padded.index_select(0, geo.key_index.flatten()).view(*geo.key_index.shape, -1)


def compactness_prior(probs: torch.Tensor, offsets: torch.Tensor, sigma: float = 1.0, threshold: float = 0.1,
                      valid: "torch.Tensor | None" = None) -> torch.Tensor:
    """LIIR's spatial compactness prior at inference (spec §8.3-8.4, the unofficial recipe).

    probs [..., M]: one query's weights over one reference's window cells at positions
    offsets [..., M, 2] (broadcastable; (y, x) in cells).  The top-2 weights v1 >= v2 at mu1, mu2
    give omega = softmax(v1, v2) and isotropic Gaussians G_m = exp(-4 ln2 |x - mu_m|^2 / sigma^2)
    (sigma read as the full width at half maximum, peak 1, not normalised); where v1 > threshold
    the row is replaced by omega1 G1 + omega2 G2 (restricted to `valid` window cells), else kept.
    """
    v, i = probs.topk(2, dim=-1)
    off = offsets.expand(*probs.shape, 2)
    mu = torch.gather(off, -2, i[..., None].expand(*i.shape, 2))                  # [..., 2, 2]
    d2 = ((off.unsqueeze(-3) - mu.unsqueeze(-2)) ** 2).sum(-1)                     # [..., 2, M]
    prior = (torch.softmax(v, -1).unsqueeze(-1) * torch.exp(d2 * (-4 * math.log(2) / sigma ** 2))).sum(-2)
    if valid is not None:
        prior = prior * valid
    return torch.where(v[..., :1] > threshold, prior, probs)


def merge_partials(parts: list):
    """Several (numerator, denominator, max) shares of one softmax -> one (log-sum-exp merging)."""
    num, den, mx = parts[0]
    for n2, d2, m2 in parts[1:]:
        m = torch.maximum(mx, m2)
        a, b = torch.exp(mx - m), torch.exp(m2 - m)
        num, den, mx = num * a[:, None] + n2 * b[:, None], den * a + d2 * b, m
    return num, den, mx


def window_softmax_multi(query: torch.Tensor, frames: list, labels: list, geo: WindowGeometry,
                         temperature: float = 1.0, compact: "tuple[float, float] | None" = None,
                         tiles_per_chunk: int = 4, extra: "list | None" = None) -> torch.Tensor:
    """Soft labels [N, K] from ONE softmax over every window cell of every reference (MAST/LIIR:
    no top-k), in float32: MAST's raw 64-d dot products are too large for bf16 weights.

    frames: KeyRegions (float32) per reference; labels: row_regions of their labels.  Memory is
    bounded by the chunk of tiles ([chunk, T*T, refs, P*P] scores), never N x N.  `compact` =
    (sigma, threshold) applies LIIR's prior per (reference, query) after the joint softmax.
    `extra`: other references' shares of the same softmax (roi_window_partial), merged per query.
    """
    n = geo.n
    if extra:
        if compact:
            raise ValueError("the compactness prior needs every reference's window probabilities")
        num, den, mx = merge_partials(extra)
        pad = lambda x, v: torch.cat([x, x.new_full((1, *x.shape[1:]), v)])  # noqa: E731  (padding queries)
        ex_num, ex_den, ex_mx = pad(num, 0.0), pad(den, 0.0), pad(mx, NEG)
        if not frames:
            return num / den[:, None]
    qp = _padded(query.float())
    k = labels[0].shape[-1]
    out = query.new_zeros(n + 1, k, dtype=torch.float32)
    offsets = geo.region_offsets()[None, :, None] if compact else None               # [1, T*T, 1, P*P, 2]
    valid = torch.isfinite(geo.bias)
    ntiles = geo.query_index.shape[0]
    for s in range(0, ntiles, tiles_per_chunk):
        e = min(ntiles, s + tiles_per_chunk)
        qi = geo.query_index[s:e]
        q = qp[qi]                                                                   # [t, T*T, C]
        scores = torch.stack([torch.baddbmm(geo.bias[s:e], q, f.regions[s:e].transpose(1, 2)) for f in frames], 2)
        if temperature != 1.0:
            scores = scores / temperature
        lab = torch.stack([r[s:e] for r in labels], 1).float()                        # [t, u, P*P, K]
        if extra:
            m = torch.maximum(scores.flatten(2).amax(-1), ex_mx[qi])                  # [t, T*T]
            ez = torch.exp(scores - m[..., None, None])
            share = torch.exp(ex_mx[qi] - m)
            num = torch.einsum("tqup,tupk->tqk", ez, lab) + ex_num[qi] * share[..., None]
            den = ez.sum((-1, -2)) + ex_den[qi] * share
            out[qi.flatten()] = (num / den[..., None]).flatten(0, 1)
            continue
        a = torch.softmax(scores.flatten(2), -1).view_as(scores)                      # [t, T*T, u, P*P]
        if compact:
            a = compactness_prior(a, offsets, compact[0], compact[1], valid[s:e][:, :, None])
        out[qi.flatten()] = torch.einsum("tqup,tupk->tqk", a, lab).flatten(0, 1)
    return out[:n]


def mutual_scores(s: torch.Tensor, m_ref: torch.Tensor, m_tar: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """ContrastCorr's mutual correlation (spec §7.6, Eq. 8-9) on scores s [targets, refs]:
    s * (s / (m_ref + eps)) * (s / (m_tar + eps)), m_ref[i] = max over targets of s[:, i],
    m_tar[j] = max over references of s[j].  Scores are clamped at 0 inside the ratios (§11b-25:
    a no-op for post-ReLU features; keeps the weights in [0, 1] for signed ones)."""
    sp = s.clamp_min(0)
    return s * (sp / (m_ref.clamp_min(0)[None] + eps)) * (sp / (m_tar.clamp_min(0)[:, None] + eps))


def global_topk_softmax(query: torch.Tensor, key: torch.Tensor, k: int, temperature: float = 1.0,
                        mutual: bool = False, chunk: int = 1024):
    """UVC/ContrastCorr (spec §6.9, §7.6): per target cell, a softmax over ALL cells of one
    reference (scores / temperature), of which the top-k are kept WITHOUT renormalising.

    query [C, Nq], key [C, Nk], float32.  Returns (weights [Nq, k], cells [Nq, k]).  Chunked over
    queries (memory chunk x Nk); the mutual re-weighting needs each reference cell's best score
    over all targets first, so it makes one extra pass.
    """
    qt, key = query.t().float(), key.float()
    m_ref = m_tar = None
    if mutual:
        m_ref = torch.full((key.shape[1],), NEG, device=key.device)
        m_tar = []
        for s in range(0, qt.shape[0], chunk):
            sc = qt[s:s + chunk] @ key
            m_ref = torch.maximum(m_ref, sc.amax(0))
            m_tar.append(sc.amax(1))
        m_tar = torch.cat(m_tar)
    ws, cs = [], []
    for s in range(0, qt.shape[0], chunk):
        sc = qt[s:s + chunk] @ key
        if mutual:
            sc = mutual_scores(sc, m_ref, m_tar[s:s + chunk])
        sc = sc / temperature
        v, c = sc.topk(min(k, sc.shape[1]), dim=1)
        ws.append(torch.exp(v - torch.logsumexp(sc, 1, keepdim=True)))
        cs.append(c)
    return torch.cat(ws), torch.cat(cs)


def _sample(img: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of img [1, C, h, w] at cell positions (py, px) [n, M] -> [C, n, M]; zero
    outside the grid; align_corners=True semantics (what MAST's grid normalisation by (w-1) means,
    spec §11a-12)."""
    _, _, h, w = img.shape
    grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], -1)[None]
    return torch.nn.functional.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def roi_window_partial(query: torch.Tensor, key: torch.Tensor, labels: torch.Tensor, grid: tuple,
                       radius: int, dilation: int, temperature: float = 1.0, chunk: int = 512):
    """MAST's long-term reference search (spec §4.3): a coarse square window dilated by `dilation`
    gives each query a soft-argmax offset o(q); the fine window of (2r+1)^2 cells is then re-sampled
    bilinearly around q + o(q) (zero outside), for the features and the labels alike.

    query, key [C, N] float32; labels [N, K].  Returns the query's share of a joint softmax as
    (numerator [N, K] = sum exp(s - m) * label, denominator [N] = sum exp(s - m), m [N] = max s), to be
    merged with the other references' windows.  Memory: chunk x (2r+1)^2 x C per step.
    """
    h, w = grid
    c, n = key.shape
    kf = key.float().reshape(1, c, h, w)
    lf = labels.float().t().reshape(1, -1, h, w)
    r = torch.arange(-radius, radius + 1, dtype=torch.float32, device=key.device)
    oy, ox = r.repeat_interleave(len(r)), r.repeat(len(r))                          # [M]
    cells = torch.arange(n, device=key.device)
    ys, xs = (cells // w).float(), (cells % w).float()
    nums, dens, mxs = [], [], []
    for s in range(0, n, chunk):
        q = query[:, s:s + chunk].float()
        qy, qx = ys[s:s + chunk, None], xs[s:s + chunk, None]
        coarse = torch.einsum("cn,cnm->nm", q, _sample(kf, qy + dilation * oy, qx + dilation * ox)) / temperature
        a = torch.softmax(coarse, 1)
        dy, dx = dilation * (a @ oy), dilation * (a @ ox)                           # soft-argmax offset
        py, px = qy + dy[:, None] + oy, qx + dx[:, None] + ox
        sc = torch.einsum("cn,cnm->nm", q, _sample(kf, py, px)) / temperature
        mx = sc.amax(1)
        e = torch.exp(sc - mx[:, None])
        nums.append(torch.einsum("nm,knm->nk", e, _sample(lf, py, px)))
        dens.append(e.sum(1))
        mxs.append(mx)
    return torch.cat(nums), torch.cat(dens), torch.cat(mxs)
