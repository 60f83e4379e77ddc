"""The inspector dock driven like a person (offscreen): click, wait for the heat map off the GUI
thread, check where the best match lands on a 2-frame video whose second frame is the first shifted
by a known offset; live controls; coalesced requests; PNG export read back."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PIL import Image  # noqa: E402
from PySide6.QtCore import QPoint, Qt  # noqa: E402

from annotator.inspector import InspectorDock  # noqa: E402
from engine import inspect as ei  # noqa: E402
from engine.errors import AffinityError  # noqa: E402
from engine.features import FeatureExtractor  # noqa: E402
from engine.models.specs import get_spec, random_encoder  # noqa: E402
from tests.test_inspect import SHIFT, ArrayVideo, shifted_pair, texture  # noqa: E402

TIMEOUT = 15000


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(random_encoder(get_spec("crw-r18-s8")), device="cpu", precision="fp32", batch_size=1)


@pytest.fixture()
def dock(qtbot, extractor):
    d = InspectorDock()
    qtbot.addWidget(d)
    d.resize(420, 820)
    d.show()
    extractor.clear_cache()
    d.set_source(shifted_pair(), extractor)
    yield d
    d.close()


def click(qtbot, dock, x, y):
    with qtbot.waitSignal(dock.result_ready, timeout=TIMEOUT) as blocker:
        dock.inspect(x, y)
    return blocker.args[0]


def test_click_finds_the_shifted_point_off_the_gui_thread(qtbot, dock):
    with qtbot.waitSignal(dock.result_ready, timeout=TIMEOUT) as blocker:
        dock.inspect(100, 60)
        # inspect() returned before the result: the work runs in the pool, the UI says so
        assert dock.busy and dock.status.text().startswith("computing features")
        assert dock.last_result is None
    r = blocker.args[0]
    assert (r.a, r.b) == (0, 1) and not r.cached
    best = r.matches[0]
    assert abs(best.x - (100 - SHIFT[0])) <= 8 and abs(best.y - (60 - SHIFT[1])) <= 8
    assert dock.table.rowCount() == 10 and dock.table.item(0, 1).text() == f"{best.x:.0f}"
    assert dock.export_button.isEnabled() and "weight" in dock.status.text()
    # the second click on the same pair reuses the features
    r2 = click(qtbot, dock, 60, 90)
    assert r2.cached and abs(r2.matches[0].x - 44) <= 8 and abs(r2.matches[0].y - 82) <= 8
    qtbot.waitUntil(lambda: not dock.busy, timeout=TIMEOUT)


def test_click_in_the_frame_a_view(qtbot, dock):
    click(qtbot, dock, 10, 10)
    view = dock.view_a
    rect = view.image_rect()
    s = rect.width() / 192
    pos = QPoint(int(rect.x() + 150.5 * s), int(rect.y() + 100.5 * s))
    with qtbot.waitSignal(dock.result_ready, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(view, Qt.LeftButton, pos=pos)
    r = blocker.args[0]
    assert abs(r.point[0] - 150.5) <= 1 / s + 0.5 and abs(r.point[1] - 100.5) <= 1 / s + 0.5
    assert abs(r.matches[0].x - (150 - SHIFT[0])) <= 8 and abs(r.matches[0].y - (100 - SHIFT[1])) <= 8


def test_live_controls(qtbot, dock):
    r = click(qtbot, dock, 100, 60)
    peaks = [r.heat.max()]
    for t in (0.02, 0.01):
        with qtbot.waitSignal(dock.result_ready, timeout=TIMEOUT) as blocker:
            dock.temperature.setValue(t)
        peaks.append(blocker.args[0].heat.max())
        assert blocker.args[0].params.temperature == pytest.approx(t)
    assert peaks[0] < peaks[1] < peaks[2]                        # sharper as T drops

    with qtbot.waitSignal(dock.result_ready, timeout=TIMEOUT) as blocker:
        dock.radius.setValue(2)
    h = blocker.args[0].heat
    cy, cx = blocker.args[0].cell
    yy, xx = np.mgrid[:h.shape[0], :h.shape[1]]
    assert h[(yy - cy) ** 2 + (xx - cx) ** 2 >= 4].max() == 0    # nothing outside the window
    assert len(blocker.args[0].matches) == 10 - 1                # 9 cells lie within radius 2

    with qtbot.waitSignal(dock.result_ready, timeout=TIMEOUT) as blocker:
        dock.topk.setValue(3)
    assert len(blocker.args[0].matches) == 3 and dock.table.rowCount() == 3


def test_frame_b_choices(qtbot, dock, extractor):
    video = ArrayVideo([texture(96, 128, seed=s) for s in range(5)], path="mem://five")
    dock.set_source(video, extractor)
    dock.set_frame_a(4)
    assert dock.frame_b() == 3                   # next frame of the last frame looks back
    dock.set_keyframes([0, 2])
    dock.b_mode.setCurrentText("nearest keyframe")
    assert dock.frame_b() == 2
    dock.b_mode.setCurrentText("frame")
    assert dock.b_spin.isEnabled() and dock.b_spin.maximum() == 4
    dock.b_spin.setValue(1)
    r = click(qtbot, dock, 50, 40)
    assert (r.a, r.b) == (4, 1)
    dock.b_mode.setCurrentText("previous frame")
    with qtbot.waitSignal(dock.result_ready, timeout=TIMEOUT) as blocker:
        dock.set_frame_a(2)                     # following the main window re-inspects
    assert (blocker.args[0].a, blocker.args[0].b) == (2, 1)


def test_requests_are_coalesced(qtbot, dock):
    results = []
    dock.result_ready.connect(results.append)
    points = [(20 + 15 * i, 30 + 5 * i) for i in range(6)]
    for x, y in points:
        dock.inspect(x, y)
    qtbot.waitUntil(lambda: not dock.busy, timeout=TIMEOUT)
    assert dock.last_result.point == points[-1]
    assert len(results) <= 2 and results[-1].point == points[-1]   # stale results never shown


def test_export_png(qtbot, dock, tmp_path):
    with pytest.raises(AffinityError, match="click a point first"):
        dock.export_png(tmp_path / "none.png")
    r = click(qtbot, dock, 100, 60)
    path = tmp_path / "heat.png"
    dock.export_png(path)
    back = np.array(Image.open(path))
    video = shifted_pair()
    expected = ei.render_pair(video.frame(0), video.frame(1), r)
    assert back.shape == (128 + 22, 2 * 192 + 8, 3)
    np.testing.assert_array_equal(back, expected)
    assert [p.name for p in tmp_path.iterdir()] == ["heat.png"]   # no temp file left
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AffinityError, match="cannot write"):
        dock.export_png(blocker / "x.png")


def test_no_source_is_harmless(qtbot):
    d = InspectorDock()
    qtbot.addWidget(d)
    d.inspect(10, 10)
    assert "No video" in d.status.text() and not d.busy
