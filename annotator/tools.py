"""Mask painting operations on id masks (numpy + OpenCV, no Qt), each touching only what it must.

A stroke works on a private copy of the frame's mask; each mouse move paints one segment into the
rectangle around it and returns that rectangle, so the view redraws only the dirty part.  The rule
for other objects is the same for every tool: painting *over* replaces whatever is there, painting
*behind* only claims background (and the object's own pixels); the eraser in *over* mode clears
every object under it, in *behind* mode only the selected one.
"""
from __future__ import annotations

import cv2
import numpy as np

Rect = tuple[int, int, int, int]   # x0, y0, x1, y1 (exclusive), clipped to the mask


def _clip(mask: np.ndarray, x0, y0, x1, y1) -> "Rect | None":
    h, w = mask.shape
    x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1))
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _apply(mask: np.ndarray, rect: Rect, region: np.ndarray, oid: int, behind: bool, erase: bool) -> None:
    x0, y0, x1, y1 = rect
    sub = mask[y0:y1, x0:x1]
    if erase:
        sub[region & (sub == oid) if behind else region] = 0
    elif behind:
        sub[region & ((sub == 0) | (sub == oid))] = oid
    else:
        sub[region] = oid


def paint_segment(mask: np.ndarray, p0, p1, radius: float, oid: int, behind: bool = False,
                  erase: bool = False) -> "Rect | None":
    """Paint a round-capped line from p0 to p1 (x, y in pixels) in place; returns the dirty rect."""
    r = max(0.5, float(radius))
    (ax, ay), (bx, by) = p0, p1
    rect = _clip(mask, min(ax, bx) - r - 1, min(ay, by) - r - 1, max(ax, bx) + r + 2, max(ay, by) + r + 2)
    if rect is None:
        return None
    x0, y0, x1, y1 = rect
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    # Fixed-point coordinates (shift 2) keep sub-pixel positions of the pointer.
    a = (int(round((ax - x0) * 4)), int(round((ay - y0) * 4)))
    b = (int(round((bx - x0) * 4)), int(round((by - y0) * 4)))
    rr = int(round(r * 4))
    cv2.circle(canvas, a, rr, 1, -1, cv2.LINE_8, 2)
    cv2.circle(canvas, b, rr, 1, -1, cv2.LINE_8, 2)
    if a != b:
        d = np.array([b[0] - a[0], b[1] - a[1]], np.float64)
        n = np.array([-d[1], d[0]]) / np.hypot(*d) * rr
        quad = np.array([a + n, b + n, b - n, a - n]).round().astype(np.int32)
        cv2.fillConvexPoly(canvas, quad, 1, cv2.LINE_8, 2)
    _apply(mask, rect, canvas.astype(bool), oid, behind, erase)
    return rect


def flood_fill(mask: np.ndarray, seed, oid: int, behind: bool = False) -> "Rect | None":
    """Fill the 4-connected region of equal ids around `seed` (x, y) with `oid`, in place.
    Behind: only a background region is filled."""
    h, w = mask.shape
    x, y = int(seed[0]), int(seed[1])
    if not (0 <= x < w and 0 <= y < h):
        return None
    old = int(mask[y, x])
    if old == oid or (behind and old != 0):
        return None
    ff = np.zeros((h + 2, w + 2), np.uint8)
    cv2.floodFill(mask.copy(), ff, (x, y), 0, 0, 0, 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
    region = ff[1:-1, 1:-1].astype(bool)
    ys, xs = np.nonzero(region)
    rect = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    x0, y0, x1, y1 = rect
    mask[y0:y1, x0:x1][region[y0:y1, x0:x1]] = oid
    return rect


def fill_polygon(mask: np.ndarray, points, oid: int, behind: bool = False, erase: bool = False) -> "Rect | None":
    """Fill a closed polygon (list of (x, y)) in place; returns the dirty rect."""
    if len(points) < 3:
        return None
    pts = np.asarray(points, np.float64)
    rect = _clip(mask, pts[:, 0].min() - 1, pts[:, 1].min() - 1, pts[:, 0].max() + 2, pts[:, 1].max() + 2)
    if rect is None:
        return None
    x0, y0, x1, y1 = rect
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    local = ((pts - [x0, y0]) * 4).round().astype(np.int32)
    cv2.fillPoly(canvas, [local], 1, cv2.LINE_8, 2)
    _apply(mask, rect, canvas.astype(bool), oid, behind, erase)
    return rect
