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


def test_overlay_cache_is_byte_bounded_and_tells_stale_from_current(qtbot):
    from annotator.overlay import OverlayCache, colour_table
    objects = {1: {"colour": (255, 0, 0)}}
    lut, faded = colour_table(objects, 1.0), colour_table(objects, 0.5)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:20, 10:30] = 1
    cache = OverlayCache(budget_bytes=3 * 64 * 48 * 4)
    a = cache.get(0, mask, lut, style=0)
    assert cache.get(0, mask, lut, style=0) is a
    b = cache.get(0, mask, faded, style=0)             # the frame went stale: same mask, faded colours
    assert b is not a and b.image.pixelColor(15, 15).alpha() < a.image.pixelColor(15, 15).alpha()
    for i in range(1, 6):
        cache.get(i, mask, lut, style=0)
    assert len(cache) == 3 and 0 not in cache and 5 in cache


def test_canvas_warms_the_decoded_neighbours_of_the_frame_on_screen(qtbot, tmp_path):
    from engine.labels import read_mask
    from annotator.document import DEMO_DIR
    from tests.test_gui_app import close, make_window
    w = make_window(qtbot, tmp_path)
    w.open_demo()
    s, video, canvas = w.doc.session, w.doc.video, w.canvas
    for i in range(12):
        s.set_keyframe(i, read_mask(DEMO_DIR / "demo_masks" / f"{i:05d}.png", size=s.size))
    for i in range(9):
        video.frame(i)                                  # 0..8 decoded; 9.. are not
    canvas.pixmaps.clear()
    canvas.overlays.clear()
    w.go_to(5, user=True)
    qtbot.waitUntil(lambda: canvas.frame_index == 5, timeout=5000)
    qtbot.waitUntil(lambda: not canvas._warm_timer.isActive(), timeout=5000)
    # scrubbing forward: the next frames and the previous ones are ready before they are asked for
    assert all(j in canvas.pixmaps and j in canvas.overlays for j in (3, 4, 6, 7, 8))
    assert 9 not in canvas.pixmaps                     # not decoded: warming never decodes (it may seek)
    w.go_to(4, user=True)                               # a warmed frame: no conversion on screen
    qtbot.waitUntil(lambda: canvas.frame_index == 4, timeout=5000)
    assert canvas.frame_item.pixmap().cacheKey() == canvas.pixmaps.get(4, None).cacheKey()
    close(w)
