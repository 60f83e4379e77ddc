"""Label overlays: an id mask turned into a premultiplied ARGB image through a 256-entry lookup
table, kept in a byte-bounded LRU (scrubbing back and forth re-uses them, and the canvas warms the
neighbours of the frame on screen in idle time); a paint stroke updates just its dirty rectangle of
the image in place."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6.QtGui import QImage

BUDGET_BYTES = 128 * 2 ** 20


def colour_table(objects: dict, opacity: float, hidden=frozenset()) -> np.ndarray:
    """uint32[256] premultiplied ARGB per id; background and hidden ids transparent."""
    lut = np.zeros(256, np.uint32)
    a = int(round(255 * max(0.0, min(1.0, opacity))))
    for oid, info in objects.items():
        if oid in hidden or not 0 < oid < 256:
            continue
        r, g, b = (int(c) * a // 255 for c in info["colour"])
        lut[oid] = (a << 24) | (r << 16) | (g << 8) | b
    return lut


class OverlayImage:
    """A QImage over a numpy uint32 buffer (kept alive together; Qt does not own the memory)."""

    def __init__(self, mask: np.ndarray, lut: np.ndarray):
        h, w = mask.shape
        self.buffer = lut[mask]
        self.image = QImage(self.buffer.data, w, h, w * 4, QImage.Format_ARGB32_Premultiplied)

    def update_rect(self, mask: np.ndarray, lut: np.ndarray, rect) -> None:
        x0, y0, x1, y1 = rect
        self.buffer[y0:y1, x0:x1] = lut[mask[y0:y1, x0:x1]]


class OverlayCache:
    """Overlay images by frame, at most `budget_bytes` of them (at least 2)."""

    def __init__(self, budget_bytes: int = BUDGET_BYTES):
        self._items: OrderedDict = OrderedDict()
        self.budget = budget_bytes
        self._bytes = 0

    def get(self, frame: int, mask: np.ndarray, lut: np.ndarray, style: int) -> OverlayImage:
        # The session never edits a stored mask in place, so its identity names its content; the
        # table's identity tells a stale (faded) rendering from a current one.
        key = (frame, id(mask), id(lut), style)
        item = self._items.get(frame)
        if item is not None and item[0] == key and item[2] is mask and item[3] is lut:
            self._items.move_to_end(frame)
            return item[1]
        if item is not None:
            self._bytes -= item[1].buffer.nbytes
        img = OverlayImage(mask, lut)
        self._items[frame] = (key, img, mask, lut)
        self._items.move_to_end(frame)
        self._bytes += img.buffer.nbytes
        while self._bytes > self.budget and len(self._items) > 2:
            self._bytes -= self._items.popitem(last=False)[1][1].buffer.nbytes
        return img

    def __contains__(self, frame: int) -> bool:
        return frame in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
