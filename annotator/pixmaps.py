"""Screen-ready frames: a byte-bounded LRU of QPixmaps by frame index, so scrubbing back to a frame
skips the RGB -> pixmap conversion (about 3 ms for a 480p frame, more than the rest of a repaint)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PySide6.QtGui import QImage, QPixmap

BUDGET_BYTES = 128 * 2 ** 20


class PixmapCache:
    def __init__(self, budget_bytes: int = BUDGET_BYTES):
        self.budget = budget_bytes
        self._items: OrderedDict[int, QPixmap] = OrderedDict()
        self._limit = 1

    def reset(self, size: tuple[int, int]) -> None:
        """Empty it for a new video of `size` (w, h); at least 2 frames even for 8K input."""
        self._items.clear()
        self._limit = max(2, self.budget // max(1, 4 * size[0] * size[1]))

    def clear(self) -> None:
        self._items.clear()

    def get(self, index: int, rgb_of) -> QPixmap:
        """The pixmap of frame `index`, converting `rgb_of(index)` (HxWx3 uint8) when not cached."""
        pix = self._items.get(index)
        if pix is not None:
            self._items.move_to_end(index)
            return pix
        rgb = np.ascontiguousarray(rgb_of(index))
        h, w = rgb.shape[:2]
        pix = QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888))   # copies the pixels
        self._items[index] = pix
        while len(self._items) > self._limit:
            self._items.popitem(last=False)
        return pix

    def __contains__(self, index: int) -> bool:
        return index in self._items

    def __len__(self) -> int:
        return len(self._items)
