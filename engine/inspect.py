"""Affinity inspector: where does one pixel of frame A go in frame B?  No Qt.

For a clicked point in frame A this gives the CRW transition row of its feature cell: cosine scores
against every cell of frame B (or those within `radius` cells, the propagator's short-term window:
Euclidean, strict <), softmaxed at `temperature`; plus the top-k cells the propagator would mix, with
the weights it would give them (softmax over the top-k only).

Public API::

    InspectParams(temperature=0.05, topk=10, radius=None, scale=1.0, max_side=1280).validate()
    Inspector(source, params=None)      # source: Propagator | FeatureExtractor | Encoder
        .inspect(video, a, b, x, y, params=None) -> InspectResult
        .features(video, index) -> torch.Tensor [C, h, w]   (cached; shared with a Propagator's cache)
        .grid(video) -> ((pw, ph) processing size, (h, w) feature grid, stride)
        .has_features(video, index) -> bool                  (is the first click on it instant?)
    inspect(source, video, a, b, point=(x, y), params=None) -> InspectResult   (one-shot form)
    heatmap_from_features(feat_a, feat_b, cell, params) -> (heat [h, w], scores [h, w], window [h, w])
    render_heatmap(frame_rgb, heat, matches, *, alpha=0.65, window_px=None) -> uint8[H, W, 3]
    render_query(frame_rgb, point, *, cell_box=None) -> uint8[H, W, 3]
    render_pair(frame_a, frame_b, result) -> uint8[H, 2W + gap, 3]   (the PNG export figure)
    save_png(path, rgb) -> None                                      (atomic)

InspectResult fields: a, b, point (x, y frame pixels), cell (row, col) on the feature grid, heat
(float32[h, w], sums to 1 over the window), heat_full (float32[H, W], the same upsampled to frame
size, bilinear), scores (float32[h, w] cosine, NaN outside the window), matches (list of Match:
rank, x, y frame pixels of the cell centre, cell, score, weight = propagation weight over the top-k,
prob = heat value), cell_box (x0, y0, x1, y1 of the clicked cell in frame pixels), timings
(features_ms, affinity_ms) and cached (whether both frames' features came from the cache).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from . import atomic
from .errors import ConfigError
from .features import FeatureExtractor, processing_size, resize_frame


@dataclass
class InspectParams:
    temperature: float = 0.05        # CRW protocol default
    topk: int = 10
    radius: "float | None" = None    # feature cells (strict <); None or 0 = global search over B
    scale: float = 1.0               # processing scale, as PropagationParams.scale
    max_side: "int | None" = 1280

    def validate(self) -> "InspectParams":
        if not self.temperature > 0:
            raise ConfigError(None, f"temperature must be > 0, got {self.temperature}")
        if int(self.topk) < 1:
            raise ConfigError(None, f"topk must be >= 1, got {self.topk}")
        if self.radius is not None and self.radius < 0:
            raise ConfigError(None, f"radius must be >= 0 (0 = global), got {self.radius}")
        if not 0 < self.scale <= 1:
            raise ConfigError(None, f"scale must be in (0, 1], got {self.scale}")
        return self

    @property
    def window(self) -> "float | None":
        return self.radius if self.radius else None


@dataclass
class Match:
    rank: int                 # 1 = best
    x: float                  # frame pixels of the cell centre in B
    y: float
    cell: tuple               # (row, col)
    score: float              # cosine similarity
    weight: float             # propagation weight: softmax(score / T) over the top-k
    prob: float               # heat value: softmax over the whole window


@dataclass
class InspectResult:
    a: int
    b: int
    point: tuple
    cell: tuple
    heat: np.ndarray
    heat_full: np.ndarray
    scores: np.ndarray
    matches: list
    cell_box: tuple
    params: InspectParams
    stride_px: tuple          # (sx, sy): one feature cell in frame pixels
    timings: dict = field(default_factory=dict)
    cached: bool = False


def heatmap_from_features(feat_a: torch.Tensor, feat_b: torch.Tensor, cell: tuple, params: InspectParams):
    """Cell (row, col) of A against B ([C, h, w] each): (heat, scores, window) as numpy [h, w].

    Features are L2-normalised per cell by the encoder (spec.l2_normalize), so the dot product is
    the cosine; they are re-normalised here too so constructed test features need not be.
    """
    c, h, w = feat_b.shape
    r0, c0 = cell
    q = feat_a[:, r0, c0].float()
    q = q / q.norm().clamp_min(1e-12)
    kb = feat_b.float().reshape(c, -1)
    kb = kb / kb.norm(dim=0, keepdim=True).clamp_min(1e-12)
    scores = (q @ kb).reshape(h, w)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    if params.window is not None:
        window = ((yy - r0) ** 2 + (xx - c0) ** 2).double() < float(params.window) ** 2
    else:
        window = torch.ones(h, w, dtype=torch.bool)
    logits = (scores / params.temperature).masked_fill(~window.to(scores.device), float("-inf"))
    heat = torch.softmax(logits.flatten(), 0).reshape(h, w)
    s = scores.cpu().numpy().astype(np.float32)
    s[~window.numpy()] = np.nan
    return heat.cpu().numpy().astype(np.float32), s, window.numpy()


class Inspector:
    def __init__(self, source, params: "InspectParams | None" = None):
        self.params = (params or InspectParams()).validate()
        prop_params = getattr(source, "params", None)
        if hasattr(source, "extractor"):            # a Propagator: share its extractor and cache
            self.extractor = source.extractor
            if prop_params is not None and params is None:
                self.params.scale, self.params.max_side = prop_params.scale, prop_params.max_side
        elif isinstance(source, FeatureExtractor):
            self.extractor = source
        elif hasattr(source, "spec") and hasattr(source, "trunk"):
            self.extractor = FeatureExtractor(source, batch_size=1)
        else:
            raise ConfigError(None, f"inspector source must be a Propagator, FeatureExtractor or Encoder, "
                                    f"got {type(source).__name__}")

    # Same cache key as Propagator._features, so features computed by a propagation run are reused.
    @staticmethod
    def _key(video) -> str:
        return f"{getattr(video, 'path', id(video))}"

    def grid(self, video, params: "InspectParams | None" = None):
        p = params or self.params
        w, h = video.size
        pw, ph = processing_size(w, h, p.max_side, p.scale)
        s = self.extractor.encoder.spec.stride
        return (pw, ph), (-(-ph // s), -(-pw // s)), s

    def _prepared(self, video, index: int, params: InspectParams):
        (pw, ph), _, _ = self.grid(video, params)
        return resize_frame(video.frame(index), (pw, ph))

    def has_features(self, video, index: int, params: "InspectParams | None" = None) -> bool:
        p = params or self.params
        (pw, ph), _, _ = self.grid(video, p)
        return self.extractor.is_cached(self._key(video), index, (ph, pw))

    def features(self, video, index: int, params: "InspectParams | None" = None) -> torch.Tensor:
        p = params or self.params
        return self.extractor.features(self._key(video), int(index), self._prepared(video, index, p))

    def inspect(self, video, a: int, b: int, x: float, y: float,
                params: "InspectParams | None" = None) -> InspectResult:
        p = (params or self.params).validate()
        n = len(video)
        for name, i in (("a", a), ("b", b)):
            if not 0 <= int(i) < n:
                raise ConfigError(None, f"frame {name}={i} is outside the video (0..{n - 1})")
        W, H = video.size
        if not (0 <= x < W and 0 <= y < H):
            raise ConfigError(None, f"point ({x:.1f}, {y:.1f}) lies outside the {W}x{H} frame")
        (pw, ph), (gh, gw), s = self.grid(video, p)
        cached = self.has_features(video, a, p) and self.has_features(video, b, p)
        t0 = time.perf_counter()
        fa = self.features(video, a, p)
        fb = fa if a == b else self.features(video, b, p)
        t1 = time.perf_counter()
        # Frame pixel -> processing pixel -> cell (a cell covers s x s processing pixels).
        kx, ky = pw / W, ph / H
        cell = (min(gh - 1, int(y * ky // s)), min(gw - 1, int(x * kx // s)))
        heat, scores, window = heatmap_from_features(fa, fb, cell, p)
        matches = _top_matches(heat, scores, p, s, kx, ky, W, H)
        heat_full = upsample_heat(heat, s, (pw, ph), (W, H))
        t2 = time.perf_counter()
        r0, c0 = cell
        box = (c0 * s / kx, r0 * s / ky, min(W, (c0 + 1) * s / kx), min(H, (r0 + 1) * s / ky))
        return InspectResult(int(a), int(b), (float(x), float(y)), cell, heat, heat_full, scores, matches,
                             box, p, (s / kx, s / ky),
                             {"features_ms": (t1 - t0) * 1e3, "affinity_ms": (t2 - t1) * 1e3}, cached)


def _top_matches(heat, scores, p: InspectParams, s, kx, ky, W, H) -> list[Match]:
    flat = heat.ravel()
    valid = np.flatnonzero(np.isfinite(scores.ravel()))
    k = min(int(p.topk), len(valid))
    order = valid[np.argsort(-flat[valid], kind="stable")[:k]]
    sc = scores.ravel()[order].astype(np.float64)
    wts = np.exp((sc - sc.max()) / p.temperature)
    wts /= wts.sum()
    gw = heat.shape[1]
    out = []
    for rank, (j, wt) in enumerate(zip(order, wts), 1):
        r, c = divmod(int(j), gw)
        cx = min(W - 0.5, (c + 0.5) * s / kx)
        cy = min(H - 0.5, (r + 0.5) * s / ky)
        out.append(Match(rank, float(cx), float(cy), (r, c), float(sc[rank - 1]), float(wt), float(flat[j])))
    return out


def upsample_heat(heat: np.ndarray, stride: int, proc_size: tuple, frame_size: tuple) -> np.ndarray:
    """Grid heat -> frame size: bilinear onto the processing frame (the grid covers ceil(p/s) cells,
    so crop the overhang), then to the frame."""
    h, w = heat.shape
    pw, ph = proc_size
    up = cv2.resize(heat, (w * stride, h * stride), interpolation=cv2.INTER_LINEAR)[:ph, :pw]
    if (pw, ph) != tuple(frame_size):
        up = cv2.resize(up, tuple(int(v) for v in frame_size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(up, np.float32)


def inspect(source, video, a: int, b: int, point: tuple, params: "InspectParams | None" = None) -> InspectResult:
    """One-shot form; keep an `Inspector` to reuse cached features across clicks."""
    return Inspector(source, params).inspect(video, a, b, point[0], point[1])


# -- rendering -------------------------------------------------------------------------------------
_LUT = None


def _colormap() -> np.ndarray:
    global _LUT
    if _LUT is None:
        # Inferno: dark -> yellow; reads on both dark and bright footage and is colour-blind safe.
        _LUT = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0, ::-1].astype(np.float32)
    return _LUT


def render_heatmap(frame_rgb: np.ndarray, heat: np.ndarray, matches=(), *, alpha: float = 0.65,
                   window_px: "tuple | None" = None, numbers: bool = True) -> np.ndarray:
    """Frame B with the heat blended (normalised to its maximum; opacity grows with the heat so
    cold regions keep the footage visible) and the matches as numbered rings (1 = best).
    `heat` may be grid or frame sized.  `window_px` = (cx, cy, rx, ry) draws the search window."""
    H, W = frame_rgb.shape[:2]
    hm = np.asarray(heat, np.float32)
    if hm.shape != (H, W):
        hm = cv2.resize(hm, (W, H), interpolation=cv2.INTER_LINEAR)
    peak = float(np.nanmax(hm)) if hm.size else 0.0
    hn = np.nan_to_num(hm / peak if peak > 0 else hm, nan=0.0).clip(0, 1)
    colour = _colormap()[(hn * 255).astype(np.uint8)]
    a = (alpha * np.sqrt(hn))[..., None]   # sqrt: low-probability mass stays visible
    base = frame_rgb.astype(np.float32) * 0.75   # dimmed so the heat stands out
    out = np.clip(base * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)
    if window_px is not None:
        cx, cy, rx, ry = window_px
        cv2.ellipse(out, (int(round(cx)), int(round(cy))), (max(1, int(round(rx))), max(1, int(round(ry)))),
                    0, 0, 360, (90, 200, 255), 1, cv2.LINE_AA)
    draw_markers(out, matches, numbers=numbers)
    return out


def draw_markers(img: np.ndarray, matches, numbers: bool = True) -> None:
    H, W = img.shape[:2]
    r = max(5, int(round(min(H, W) / 60)))
    font = max(0.35, r / 16)
    matches = list(matches)
    for m in reversed(matches):   # best drawn last, on top
        c = (int(round(m.x)), int(round(m.y)))
        best = m.rank == 1
        cv2.circle(img, c, r + 1, (0, 0, 0), 2 if best else 1, cv2.LINE_AA)
        cv2.circle(img, c, r, (80, 255, 120) if best else (255, 255, 255), 2 if best else 1, cv2.LINE_AA)
    if not numbers:
        return
    # Neighbouring cells crowd their numbers: label in rank order and skip a number that would
    # overlap one already placed (the table/legend lists them all), so the best ones stay legible.
    placed: list = []
    for m in matches:
        c = (int(round(m.x)), int(round(m.y)))
        txt = str(m.rank)
        (tw, th), _ = cv2.getTextSize(txt, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        org = (min(W - tw - 1, c[0] + r + 1), max(th + 1, c[1] - r))
        box = (org[0] - 1, org[1] - th - 1, org[0] + tw + 1, org[1] + 2)
        if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
            continue
        placed.append(box)
        cv2.putText(img, txt, org, cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, txt, org, cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 1, cv2.LINE_AA)


def render_query(frame_rgb: np.ndarray, point: tuple, *, cell_box: "tuple | None" = None) -> np.ndarray:
    """Frame A with the clicked point (cross-hair) and its feature cell (box)."""
    out = np.array(frame_rgb, np.uint8, copy=True)
    H, W = out.shape[:2]
    x, y = (int(round(v)) for v in point)
    r = max(6, int(round(min(H, W) / 40)))
    if cell_box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in cell_box)
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), (80, 255, 120), 1)
    for col, t in (((0, 0, 0), 3), ((80, 255, 120), 1)):
        cv2.line(out, (x - r, y), (x - r // 3, y), col, t, cv2.LINE_AA)
        cv2.line(out, (x + r // 3, y), (x + r, y), col, t, cv2.LINE_AA)
        cv2.line(out, (x, y - r), (x, y - r // 3), col, t, cv2.LINE_AA)
        cv2.line(out, (x, y + r // 3), (x, y + r), col, t, cv2.LINE_AA)
    return out


def window_px(result: InspectResult) -> "tuple | None":
    """(cx, cy, rx, ry) of the radius window in frame pixels, or None for a global search."""
    rad = result.params.window
    if rad is None:
        return None
    (x0, y0, x1, y1), (sx, sy) = result.cell_box, result.stride_px
    return ((x0 + x1) / 2, (y0 + y1) / 2, rad * sx, rad * sy)


def render_pair(frame_a: np.ndarray, frame_b: np.ndarray, result: InspectResult, gap: int = 8) -> np.ndarray:
    """The export figure: A with the query | B with heat and matches, with a caption strip."""
    left = render_query(frame_a, result.point, cell_box=result.cell_box)
    right = render_heatmap(frame_b, result.heat_full, result.matches, window_px=window_px(result))
    H, W = left.shape[:2]
    cap = 22
    out = np.full((H + cap, 2 * W + gap, 3), 24, np.uint8)
    out[cap:, :W], out[cap:, W + gap:] = left, right
    p = result.params
    rad = "global" if p.window is None else f"radius {p.window:g}"
    text_a = f"frame A {result.a}  point ({result.point[0]:.0f}, {result.point[1]:.0f})  cell {result.cell}"
    text_b = f"frame B {result.b}  T={p.temperature:g}  top-{p.topk}  {rad}"
    for text, x in ((text_a, 4), (text_b, W + gap + 4)):
        cv2.putText(out, text, (x, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (230, 230, 230), 1, cv2.LINE_AA)
    return out


def save_png(path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG, atomically."""
    from PIL import Image
    im = Image.fromarray(np.ascontiguousarray(rgb, np.uint8), mode="RGB")
    atomic.write_with(path, lambda tmp: im.save(tmp, format="PNG"), suffix=".png")

