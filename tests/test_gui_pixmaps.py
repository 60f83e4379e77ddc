"""The canvas's pixmap LRU: bounded by bytes, least recently shown frame evicted first."""
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from annotator.pixmaps import PixmapCache  # noqa: E402


def test_pixmap_cache_converts_once_and_evicts_the_least_recent(qtbot):
    calls = []

    def rgb_of(i):
        calls.append(i)
        img = np.zeros((48, 64, 3), np.uint8)
        img[..., 0] = i
        return img

    cache = PixmapCache(budget_bytes=3 * 64 * 48 * 4)          # room for 3 frames of 64x48
    cache.reset((64, 48))
    a = cache.get(0, rgb_of)
    assert cache.get(0, rgb_of) is a and calls == [0]          # a hit does not convert again
    assert a.toImage().pixelColor(5, 5).red() == 0
    for i in (1, 2):
        cache.get(i, rgb_of)
    cache.get(0, rgb_of)                                        # 0 is now the most recent
    cache.get(3, rgb_of)                                        # evicts 1
    assert len(cache) == 3 and calls == [0, 1, 2, 3]
    cache.get(1, rgb_of)
    assert calls[-1] == 1 and cache.get(3, rgb_of).toImage().pixelColor(1, 1).red() == 3
    cache.reset((10_000, 10_000))                               # huge frames: still 2 kept
    for i in range(5):
        cache.get(i, rgb_of)
    assert len(cache) == 2
