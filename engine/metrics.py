"""Evaluation metrics: DAVIS J/F and their statistics, keypoint PCK (JHMDB, BADJA), part mIoU.

The DAVIS functions reproduce `davisvideochallenge/davis2017-evaluation` (`davis2017/metrics.py`,
`davis2017/utils.py`) to within float64 rounding; `tests/test_metrics.py` checks them against the
golden values in `shared/golden/davis_metrics`.  They are written for speed: the boundary measure
only looks at the bounding box of the two masks, which gives the same numbers as the full-frame
computation (see `boundary_stats`).  Research spec §2 describes every protocol implemented here.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import cv2
import numpy as np

__all__ = [
    "db_eval_iou", "seg2bmap", "boundary_radius", "disk", "BoundaryStats", "boundary_stats",
    "db_eval_boundary", "decay_bin_edges", "db_statistics", "PCKResult", "pck_jhmdb", "BadjaPCK",
    "pck_badja", "ConfusionMatrix", "miou",
]


# ---------------------------------------------------------------------------------------------
# DAVIS: region similarity J
# ---------------------------------------------------------------------------------------------

def _as_bool(a) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == bool else a.astype(bool)


def _check_same_shape(gt: np.ndarray, pred: np.ndarray, void: "np.ndarray | None") -> None:
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    if void is not None and void.shape != gt.shape:
        raise ValueError(f"void mask {void.shape} and ground truth {gt.shape} differ in shape")


def db_eval_iou(gt, pred, void=None):
    """Region similarity J = |G ∩ P| / |G ∪ P| over non-void pixels; 1 when the union is empty.

    Any nonzero value counts as foreground.  A 2-D input gives a float; a stack [..., H, W] gives an
    array of one J per mask.
    """
    g, p = _as_bool(gt), _as_bool(pred)
    v = None if void is None else _as_bool(void)
    _check_same_shape(g, p, v)
    if g.ndim < 2:
        raise ValueError(f"masks must be at least 2-D, got shape {g.shape}")
    inter = g & p
    union = g | p
    if v is not None:
        keep = ~v
        inter &= keep
        union &= keep
    n_inter = np.count_nonzero(inter, axis=(-2, -1))
    n_union = np.count_nonzero(union, axis=(-2, -1))
    if g.ndim == 2:
        return 1.0 if n_union == 0 else float(n_inter) / float(n_union)
    with np.errstate(invalid="ignore", divide="ignore"):
        j = n_inter.astype(np.float64) / n_union
    j[n_union == 0] = 1.0
    return j


# ---------------------------------------------------------------------------------------------
# DAVIS: boundary accuracy F
# ---------------------------------------------------------------------------------------------

def seg2bmap(mask) -> np.ndarray:
    """One-pixel boundary map (bool[H, W]) of a binary mask, as the official `_seg2bmap`.

    A pixel is boundary when it differs from its right, lower or lower-right neighbour.  The last
    row compares only to the right and the last column only downwards (the image border itself is
    never a boundary), and the bottom-right pixel is never boundary.  The boundary therefore sits
    half a pixel towards the origin from the true object edge.
    """
    s = _as_bool(mask)
    if s.ndim != 2:
        raise ValueError(f"seg2bmap needs a 2-D mask, got shape {s.shape}")
    b = np.zeros(s.shape, bool)
    if s.size == 0:
        return b
    core = s[:-1, :-1]
    b[:-1, :-1] = (core != s[:-1, 1:]) | (core != s[1:, :-1]) | (core != s[1:, 1:])
    b[-1, :-1] = s[-1, :-1] != s[-1, 1:]
    b[:-1, -1] = s[:-1, -1] != s[1:, -1]
    return b


def boundary_radius(h: int, w: int, bound_th: float = 0.008) -> int:
    """Matching tolerance in pixels: ceil(bound_th * diagonal), or bound_th itself when >= 1.

    The product is formed exactly as the official code does (float64 sqrt of h² + w², times
    bound_th, ceil), so sizes whose product is exactly an integer (150x200 -> 2.0) stay there.
    """
    if bound_th >= 1:
        if bound_th != int(bound_th):
            # The official code would build a disk on a half-integer grid; nobody relies on that.
            raise ValueError(f"a pixel tolerance (bound_th >= 1) must be a whole number, got {bound_th}")
        return int(bound_th)
    if bound_th <= 0:
        raise ValueError(f"bound_th must be positive, got {bound_th}")
    return int(math.ceil(bound_th * math.sqrt(float(h) * h + float(w) * w)))


@lru_cache(maxsize=32)
def _disk_cached(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    k = ((xx * xx + yy * yy) <= r * r).astype(np.uint8)
    k.flags.writeable = False
    return k


def disk(r: int) -> np.ndarray:
    """uint8[(2r+1), (2r+1)] footprint of the offsets with dx² + dy² <= r².

    This is scikit-image's `disk(r)` (strict radius), the footprint the official F uses; OpenCV's
    MORPH_ELLIPSE is a different shape and would change F.
    """
    r = int(r)
    if r < 0:
        raise ValueError(f"disk radius must be >= 0, got {r}")
    return _disk_cached(r).copy()


def _dilate(bmap: np.ndarray, r: int) -> np.ndarray:
    # Zero border: pixels outside the array never dilate into it (the official cv2.dilate default).
    return cv2.dilate(bmap.view(np.uint8), _disk_cached(r), borderType=cv2.BORDER_CONSTANT,
                      borderValue=0).view(bool)


@dataclass(frozen=True)
class BoundaryStats:
    """What F is made of.  "pred"/"gt" follow the official naming (pred = foreground_mask)."""
    bound_pix: int
    n_pred_boundary: int
    n_gt_boundary: int
    n_pred_boundary_matched: int   # |Bp ∩ dil(Bg)|
    n_gt_boundary_matched: int     # |Bg ∩ dil(Bp)|
    precision: float
    recall: float
    F: float


def _union_box(a: np.ndarray, b: np.ndarray) -> "tuple[int, int, int, int] | None":
    """(y0, y1, x0, x1), inclusive, of the pixels set in a or b; None when both are empty."""
    x, y, w, h = cv2.boundingRect((a | b).view(np.uint8))
    if w == 0 or h == 0:
        return None
    return y, y + h - 1, x, x + w - 1


def _boundary_counts(g: np.ndarray, p: np.ndarray, r: int,
                     box: "tuple[int, int, int, int] | None") -> tuple[int, int, int, int]:
    """(n_p, n_g, n_p_matched, n_g_matched) of two bool masks, looking only around `box`.

    Exactness of the crop: every boundary pixel lies in the masks' union box grown by one pixel
    up/left (seg2bmap marks the pixel before an edge).  Growing it by one more row/column
    down/right (when the image goes on) gives a crop whose last row/column is empty, so the
    official last-row/last-column rules give the same zeros there as the interior rule would, and
    every other pixel sees the same neighbours as in the full frame.  Dilating inside the crop
    with a zero border is exact at every crop pixel because all boundary pixels are in the crop,
    and matches are only ever read at boundary pixels.
    """
    if box is None:
        return 0, 0, 0, 0
    H, W = g.shape
    y0, y1, x0, x1 = box
    ys = slice(max(y0 - 1, 0), min(y1 + 2, H))
    xs = slice(max(x0 - 1, 0), min(x1 + 2, W))
    bg = seg2bmap(g[ys, xs])
    bp = seg2bmap(p[ys, xs])
    n_g = int(np.count_nonzero(bg))
    n_p = int(np.count_nonzero(bp))
    m_p = int(np.count_nonzero(bp & _dilate(bg, r))) if n_p and n_g else 0
    m_g = int(np.count_nonzero(bg & _dilate(bp, r))) if n_p and n_g else 0
    return n_p, n_g, m_p, m_g


def _f_from_counts(n_p: int, n_g: int, m_p: int, m_g: int) -> tuple[float, float, float]:
    if n_p == 0 and n_g > 0:
        precision, recall = 1.0, 0.0
    elif n_p > 0 and n_g == 0:
        precision, recall = 0.0, 1.0
    elif n_p == 0 and n_g == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = m_p / float(n_p), m_g / float(n_g)
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f


def boundary_stats(gt, pred, void=None, bound_th: float = 0.008) -> BoundaryStats:
    """Boundary precision/recall/F of one 2-D mask pair with all intermediate counts.

    Void pixels are removed from both masks first (they act as background), as in the official
    `f_measure`.
    """
    g, p = _as_bool(gt), _as_bool(pred)
    v = None if void is None else _as_bool(void)
    _check_same_shape(g, p, v)
    if g.ndim != 2:
        raise ValueError(f"boundary_stats needs 2-D masks, got shape {g.shape}")
    if v is not None:
        g = g & ~v
        p = p & ~v
    r = boundary_radius(*g.shape, bound_th=bound_th)
    n_p, n_g, m_p, m_g = _boundary_counts(g, p, r, _union_box(g, p))
    precision, recall, f = _f_from_counts(n_p, n_g, m_p, m_g)
    return BoundaryStats(r, n_p, n_g, m_p, m_g, precision, recall, f)


def db_eval_boundary(gt, pred, void=None, bound_th: float = 0.008):
    """Boundary F-measure; a 2-D pair gives a float, a stack [T, H, W] an array of T values.

    F is symmetric in gt and pred; `boundary_stats` gives precision, recall and the counts.
    """
    g = np.asarray(gt)
    if g.ndim == 3:
        p = np.asarray(pred)
        if p.shape != g.shape:
            raise ValueError(f"ground truth {g.shape} and prediction {p.shape} differ in shape")
        return np.array([boundary_stats(g[t], p[t], None if void is None else np.asarray(void)[t],
                                        bound_th).F for t in range(g.shape[0])])
    return boundary_stats(gt, pred, void, bound_th).F


def frame_scores(gt_ids: np.ndarray, pred_ids: np.ndarray, n_objects: int,
                 bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """J and F (float64[n_objects] each) of objects 1..n_objects in one frame, no void.

    The evaluator's inner loop: each object is scored inside the bounding box of its gt and
    predicted pixels only, which makes a 480p frame cost a few milliseconds.
    """
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"ground truth {gt_ids.shape} and prediction {pred_ids.shape} differ in shape")
    r = boundary_radius(*gt_ids.shape, bound_th=bound_th)
    js = np.ones(n_objects)
    fs = np.ones(n_objects)
    for k in range(1, n_objects + 1):
        g = gt_ids == k
        p = pred_ids == k
        box = _union_box(g, p)
        if box is None:
            continue  # absent from both: the official convention scores J = F = 1
        y0, y1, x0, x1 = box
        gc, pc = g[y0:y1 + 1, x0:x1 + 1], p[y0:y1 + 1, x0:x1 + 1]
        n_union = np.count_nonzero(gc | pc)
        js[k - 1] = np.count_nonzero(gc & pc) / float(n_union)
        fs[k - 1] = _f_from_counts(*_boundary_counts(g, p, r, box))[2]
    return js, fs


# ---------------------------------------------------------------------------------------------
# DAVIS: per-object statistics
# ---------------------------------------------------------------------------------------------

def decay_bin_edges(n: int) -> np.ndarray:
    """The 5 decay bin edges for n values: round_half_up(linspace(1, n, 5)) - 1.

    The official code stores these as uint8, so for n >= 256 its edges wrap around and its decay
    is wrong (NaN with numpy >= 2).  We keep them as int64: identical for n < 256, correct above.
    """
    if n < 1:
        raise ValueError(f"need at least one value, got {n}")
    # +1e-10 turns numpy's round-half-to-even into round-half-up, as the official code does.
    return (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64)


def db_statistics(values) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of a per-frame J or F series, as the official `db_statistics`.

    Recall counts values strictly above 0.5; Decay = mean of the first quarter-bin minus mean of
    the last, where neighbouring bins share their edge value.  NaNs are ignored by the means
    (and count as misses in Recall, as officially).  An empty series gives NaNs.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    ids = decay_bin_edges(v.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        m = float(np.nanmean(v))
        r = float(np.mean(v > 0.5))
        d = float(np.nanmean(v[ids[0]:ids[1] + 1]) - np.nanmean(v[ids[3]:ids[4] + 1]))
    return m, r, d


# ---------------------------------------------------------------------------------------------
# Keypoints: PCK
# ---------------------------------------------------------------------------------------------

@dataclass
class PCKResult:
    """PCK per joint and threshold, as fractions in [0, 1] (papers print x100).

    `per_joint[a]` is float64[J] for alpha `alphas[a]` (NaN for a joint never scored);
    `counts[j]` is how many (frame, video) pairs were scored for joint j.
    """
    alphas: tuple[float, ...]
    per_joint: np.ndarray
    counts: np.ndarray

    def mean(self, alpha: float) -> float:
        """Unweighted mean over the joints that were scored at least once."""
        a = self.alphas.index(alpha)
        row = self.per_joint[a]
        return float(np.mean(row[self.counts > 0])) if np.any(self.counts > 0) else math.nan

    def to_dict(self) -> dict:
        return {f"PCK@{a:g}": self.mean(a) for a in self.alphas}


def _as_videos(x) -> list[np.ndarray]:
    if isinstance(x, np.ndarray) and x.ndim == 3:
        return [x]
    return [np.asarray(v, dtype=np.float64) for v in x]


def pck_jhmdb(pred_xy, gt_xy, alphas: Sequence[float] = (0.1, 0.2), valid=None) -> PCKResult:
    """JHMDB PCK the way CRW's `eval_pck.py` computes it (research spec §2.2).

    pred_xy, gt_xy: float[T, J, 2] (x, y in original-image pixels) for one video, or lists of such
    arrays (one per video; everything is pooled).  CRW's own files are [2, J, T]: pass
    `np.transpose(a, (2, 1, 0))`.  A prediction is invalid where its x is negative (CRW writes -1
    for an empty heat map) or not finite, or where `valid` (bool[T, J], same nesting) is False.

    Per frame t >= 1 (frame 0 is the given label), the normaliser is 0.6 x the diagonal of the
    box around the GT joints whose prediction is valid; a valid joint is correct when its distance
    to the GT divided by that normaliser is <= alpha.  No GT visibility filter: every joint counts.
    PCK is taken per joint over all scored frames of all videos, then averaged over joints.
    """
    preds, gts = _as_videos(pred_xy), _as_videos(gt_xy)
    valids = [None] * len(preds) if valid is None else [np.asarray(v, bool) for v in _as_valid(valid)]
    if not (len(preds) == len(gts) == len(valids)):
        raise ValueError("pred_xy, gt_xy (and valid) must hold the same number of videos")
    alphas = tuple(float(a) for a in alphas)
    n_joints = None
    dists: list[np.ndarray] = []   # per video: float[T-1, J], NaN where not scored
    for pv, gv, vv in zip(preds, gts, valids):
        pv = np.asarray(pv, np.float64)
        gv = np.asarray(gv, np.float64)
        if pv.shape != gv.shape or pv.ndim != 3 or pv.shape[2] != 2:
            raise ValueError(f"prediction {pv.shape} and ground truth {gv.shape} must both be [T, J, 2]")
        if n_joints is None:
            n_joints = pv.shape[1]
        elif pv.shape[1] != n_joints:
            raise ValueError(f"videos have different joint counts ({n_joints} and {pv.shape[1]})")
        ok = np.isfinite(pv).all(axis=2) & (pv[..., 0] >= 0)
        if vv is not None:
            if vv.shape != ok.shape:
                raise ValueError(f"valid mask {vv.shape} does not match predictions {ok.shape}")
            ok &= vv
        # CRW seeds the box with min = 1e6, max = -1 and only then folds the joints in; kept so
        # that out-of-image GT joints (negative coordinates) give the same box as there.
        big = np.where(ok[..., None], gv, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            lo = np.fmin(np.nanmin(big, axis=1), 1e6)
            hi = np.fmax(np.nanmax(big, axis=1), -1.0)
        lo = np.where(np.isnan(lo), 1e6, lo)
        hi = np.where(np.isnan(hi), -1.0, hi)
        scale = 0.6 * np.linalg.norm(hi - lo, axis=1)                  # [T]
        d = np.linalg.norm(pv - gv, axis=2)                              # [T, J]
        with np.errstate(divide="ignore", invalid="ignore"):
            dn = d / scale[:, None]
        # A zero normaliser (one valid joint) gives inf/NaN there: a miss that still counts.
        dn = np.where(np.isnan(dn), np.inf, dn)
        dn = np.where(ok, dn, np.nan)
        dists.append(dn[1:])
    if n_joints is None:
        raise ValueError("no videos given")
    allv = np.concatenate(dists, axis=0) if dists else np.zeros((0, n_joints))
    scored = ~np.isnan(allv)
    counts = scored.sum(axis=0)
    per_joint = np.full((len(alphas), n_joints), np.nan)
    for a, alpha in enumerate(alphas):
        hits = (np.where(scored, allv, np.inf) <= alpha).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_joint[a] = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    return PCKResult(alphas, per_joint, counts)


def _as_valid(valid) -> list:
    if isinstance(valid, np.ndarray) and valid.ndim == 2:
        return [valid]
    return list(valid)


@dataclass
class BadjaPCK:
    """PCK over all scored joints (fraction), with its counts so runs can be pooled."""
    pck: float
    n_correct: int
    n_scored: int


def _sqrt_area(area: np.ndarray) -> np.ndarray:
    return np.sqrt(area)


def pck_badja(pred, gt, visible, seg_area, alpha: float = 0.2,
              normaliser: Callable[[np.ndarray], np.ndarray] = _sqrt_area,
              skip_first: bool = True) -> BadjaPCK:
    """BADJA PCK (research spec §2.3, from the paper; UNVERIFIED against any released code).

    pred, gt: float[T, K, 2] on the annotated frames of one sequence (or lists of such, pooled);
    visible: bool[T, K] GT visibility; seg_area: float[T] pixel count of the GT mask per frame.
    A visible joint is correct when ||pred - gt|| <= alpha * normaliser(seg_area) (default
    sqrt(area)); a prediction that is not finite is a miss.  Invisible joints are not scored, nor
    is the first annotated frame of each sequence when `skip_first` (it is the given label).
    """
    single = isinstance(pred, np.ndarray) and np.asarray(pred).ndim == 3
    seqs = [(pred, gt, visible, seg_area)] if single else list(zip(pred, gt, visible, seg_area))
    n_ok = n_all = 0
    for p, g, v, a in seqs:
        p = np.asarray(p, np.float64)
        g = np.asarray(g, np.float64)
        v = np.asarray(v, bool)
        a = np.asarray(a, np.float64).reshape(-1)
        if p.shape != g.shape or p.ndim != 3 or p.shape[2] != 2 or v.shape != p.shape[:2] \
                or a.shape[0] != p.shape[0]:
            raise ValueError(f"shapes do not fit: pred {p.shape}, gt {g.shape}, visible {v.shape}, "
                             f"seg_area {a.shape}")
        if skip_first:
            p, g, v, a = p[1:], g[1:], v[1:], a[1:]
        thr = alpha * np.asarray(normaliser(a), np.float64)            # [T]
        d = np.linalg.norm(p - g, axis=2)                                # [T, K]; NaN for a lost point
        hit = np.isfinite(d) & (d <= thr[:, None])
        n_ok += int(np.count_nonzero(hit & v))
        n_all += int(np.count_nonzero(v))
    return BadjaPCK(n_ok / n_all if n_all else math.nan, n_ok, n_all)


# ---------------------------------------------------------------------------------------------
# Part propagation: confusion matrix and mIoU
# ---------------------------------------------------------------------------------------------

class ConfusionMatrix:
    """hist[gt, pred] pixel counts accumulated over frames (VIP protocol, research spec §2.4).

    Pixels whose GT class is outside [0, n_classes) are ignored; a predicted class outside that
    range is an error (CRW's `fast_hist` would crash or mis-bin it).
    """

    def __init__(self, n_classes: int = 20):
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.n = int(n_classes)
        self.hist = np.zeros((self.n, self.n), np.int64)

    def update(self, gt, pred) -> None:
        g = np.asarray(gt).reshape(-1).astype(np.int64)
        p = np.asarray(pred).reshape(-1).astype(np.int64)
        if g.shape != p.shape:
            raise ValueError(f"ground truth ({np.asarray(gt).shape}) and prediction "
                             f"({np.asarray(pred).shape}) differ in shape")
        keep = (g >= 0) & (g < self.n)
        g, p = g[keep], p[keep]
        if p.size and (p.min() < 0 or p.max() >= self.n):
            bad = int(p.min()) if p.min() < 0 else int(p.max())
            raise ValueError(f"predicted class {bad} is outside [0, {self.n})")
        self.hist += np.bincount(g * self.n + p, minlength=self.n * self.n).reshape(self.n, self.n)

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.n != self.n:
            raise ValueError(f"cannot add a {other.n}-class matrix to a {self.n}-class one")
        self.hist += other.hist
        return self

    def iou(self) -> np.ndarray:
        return class_iou(self.hist)

    def miou(self) -> float:
        return miou(self.hist)

    def scores(self) -> dict:
        """mIoU plus the other numbers CRW's script prints (pixel acc., mean class acc., fwIoU)."""
        h = self.hist.astype(np.float64)
        total = h.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            acc_cls = np.diag(h) / h.sum(axis=1)
        iou = self.iou()
        freq = h.sum(axis=1) / total if total else np.zeros(self.n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            return {
                "mIoU": self.miou(),
                "pixel_accuracy": float(np.diag(h).sum() / total) if total else math.nan,
                "mean_class_accuracy": float(np.nanmean(acc_cls)),
                "fw_iou": float(np.nansum(freq * iou)) if total else math.nan,
            }


def class_iou(confusion) -> np.ndarray:
    """IoU_c = hist[c,c] / (row_c + col_c - hist[c,c]); NaN for a class absent from GT and pred."""
    h = np.asarray(confusion, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {h.shape}")
    tp = np.diag(h)
    denom = h.sum(axis=1) + h.sum(axis=0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / denom


def miou(confusion) -> float:
    """Mean IoU over classes, skipping classes absent from both GT and prediction (nanmean)."""
    iou = class_iou(confusion)
    if np.all(np.isnan(iou)):
        return math.nan
    return float(np.nanmean(iou))
