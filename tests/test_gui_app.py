"""The desktop app driven like a person (pytest-qt, offscreen): open a real clip, paint with mouse
drags, propagate and watch results arrive, correct, re-propagate, undo/redo, save, reopen, export
and read back; keypoints; cancel; crash recovery.

Propagation runs the real engine at a small processing scale over a few frames (random weights:
these tests check the app's behaviour, not the model's quality).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, QSettings, Qt  # noqa: E402

from engine.labels import read_mask  # noqa: E402
from engine.propagate import PropagationParams  # noqa: E402

from annotator.document import DEMO_VIDEO, Document  # noqa: E402
from annotator.main_window import MainWindow  # noqa: E402
from annotator.recovery import RecoveryRegistry  # noqa: E402
from annotator.settings import AppSettings  # noqa: E402

WAIT_MS = 90_000


# -- helpers shared by the GUI tests ----------------------------------------------------------------
def make_window(qtbot, tmp_path, scale=0.25, **settings) -> MainWindow:
    store = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    for key, value in settings.items():
        store.set(key.replace("__", "/"), value)
    w = MainWindow(settings=store, registry=RecoveryRegistry(tmp_path / "recovery"))
    w.errors.record_only = True
    w.confirm_close = lambda: "discard"
    w.propagation.models.params_override = PropagationParams(scale=scale)
    w.autosaver.timer.stop()               # tests trigger autosaves themselves
    qtbot.addWidget(w)
    w.resize(1100, 760)
    w.show()
    qtbot.waitExposed(w)
    return w


def view_pos(canvas, x, y):
    """Viewport position of image pixel (x, y)."""
    return canvas.mapFromScene(QPointF(x + 0.5, y + 0.5))


def drag(qtbot, canvas, points, button=Qt.LeftButton):
    vp = canvas.viewport()
    qtbot.mousePress(vp, button, pos=view_pos(canvas, *points[0]))
    for p in points[1:]:
        qtbot.mouseMove(vp, pos=view_pos(canvas, *p))
    qtbot.mouseRelease(vp, button, pos=view_pos(canvas, *points[-1]))


def click(qtbot, canvas, x, y, button=Qt.LeftButton):
    qtbot.mouseClick(canvas.viewport(), button, pos=view_pos(canvas, x, y))


def scribble(qtbot, canvas, cx, cy, r):
    """Zig-zag brush strokes covering a disc of radius r around (cx, cy)."""
    pts = []
    for k, dy in enumerate(np.linspace(-r, r, 7)):
        span = np.sqrt(max(r * r - dy * dy, 0))
        xs = (cx - span, cx + span) if k % 2 == 0 else (cx + span, cx - span)
        pts += [(xs[0], cy + dy), ((xs[0] + xs[1]) / 2, cy + dy), (xs[1], cy + dy)]
    drag(qtbot, canvas, pts)


def wait_idle(qtbot, w, timeout=WAIT_MS):
    qtbot.waitUntil(lambda: not w.propagation.busy, timeout=timeout)


def close(w):
    w.confirm_close = lambda: "discard"
    w.close()


@pytest.fixture
def davis_clip(shared):
    clip = shared / "data" / "davis2016" / "blackswan"
    if not clip.is_dir():
        pytest.skip("DAVIS-2016 blackswan is not in ../shared")
    return clip


# -- masks on a real clip -----------------------------------------------------------------------------
@pytest.mark.shared
def test_mask_workflow_on_a_davis_clip(qtbot, tmp_path, davis_clip):
    w = make_window(qtbot, tmp_path)
    assert w.open_path(davis_clip, ask=False), w.errors.history
    s = w.doc.session
    assert len(s) == 50 and s.size == (854, 480)
    gt = read_mask(davis_clip / "Annotations" / "00000.png")
    ys, xs = np.nonzero(gt)
    cx, cy = float(xs.mean()), float(ys.mean())
    w.state.set_brush_size(24)

    # paint the swan on frame 0 and on frame 8 (two keyframes), with mouse drags
    scribble(qtbot, w.canvas, cx, cy, 30)
    assert s.keyframes() == [0] and (s.label(0) == 1).sum() > 2000
    assert w.doc.dirty and "*" in w.windowTitle()
    inside = (s.label(0) == 1) & (gt == 1)
    assert inside.sum() > 0.7 * (s.label(0) == 1).sum()      # the paint landed where the swan is
    w.go_to(8)
    qtbot.waitUntil(lambda: w.canvas.frame_index == 8)
    scribble(qtbot, w.canvas, cx, cy, 30)
    assert s.keyframes() == [0, 8]

    # propagate forward from 0: frames 1..7 arrive one by one, on the timeline and the canvas
    w.go_to(0)
    seen = []
    w.propagation.frame_applied.connect(seen.append)
    assert w.propagate("forward")
    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=WAIT_MS)
    wait_idle(qtbot, w)
    assert seen == list(range(1, 8))
    assert [s.provenance(i).kind for i in range(9)] == ["user"] + ["propagated"] * 7 + ["user"]
    assert w.canvas.frame_index == 7                          # the view followed the run
    qtbot.waitUntil(lambda: w.timeline._status[:9].tolist() == [1] + [2] * 7 + [1])
    assert all(s.confidence(i) is not None for i in range(1, 8))
    assert w.doc.undo.undoText().startswith("Propagate forward")

    # correct frame 4 with the eraser: it becomes a keyframe, 5..7 go stale
    w.go_to(4)
    qtbot.waitUntil(lambda: w.canvas.frame_index == 4)
    before4 = np.array(s.label(4))
    w.state.set_tool("eraser")
    drag(qtbot, w.canvas, [(cx - 60, cy), (cx + 60, cy)])
    assert s.keyframes() == [0, 4, 8]
    assert [s.provenance(i).kind for i in (5, 6, 7)] == ["stale"] * 3
    qtbot.waitUntil(lambda: (w.timeline._status[5:8] == 3).all())

    # re-propagate the stale frames only: each from its nearer keyframe (the correction at 4 or
    # the keyframe at 8; the middle frame from both, the later run wins), nothing outside 5..7
    seen.clear()
    assert w.repropagate()
    wait_idle(qtbot, w)
    assert set(seen) == {5, 6, 7}
    assert [s.provenance(i).kind for i in range(9)] == ["user", *["propagated"] * 3, "user",
                                                        *["propagated"] * 3, "user"]
    assert s.provenance(5).source == 4 and s.provenance(7).source == 8

    # undo the re-propagation and the correction; redo them
    w.undo()
    assert [s.provenance(i).kind for i in (5, 6, 7)] == ["stale"] * 3
    w.undo()
    assert s.keyframes() == [0, 8] and np.array_equal(s.label(4), before4)
    assert [s.provenance(i).kind for i in range(1, 8)] == ["propagated"] * 7
    w.redo()
    w.redo()
    assert s.keyframes() == [0, 4, 8] and s.provenance(5).source == 4

    # save, reopen exactly as left
    project = tmp_path / "swan-project"
    assert w._save_to(project), w.errors.history
    assert not w.doc.dirty and "*" not in w.windowTitle()
    labels = {i: np.array(s.label(i)) for i in range(9)}
    assert w.open_path(project)
    s2 = w.doc.session
    assert s2.keyframes() == [0, 4, 8]
    assert [s2.provenance(i).kind for i in range(9)] == [s.provenance(i).kind for i in range(9)]
    assert all(np.array_equal(s2.label(i), labels[i]) for i in range(9))

    # export every mask format and read it back
    from engine import export as E
    w.export("masks", tmp_path / "masks")
    w.exports.wait()
    w.export("coco", tmp_path / "labels.json")
    w.exports.wait()
    w.export("video", tmp_path / "overlay.mp4", stop=9)
    w.exports.wait()
    assert not w.errors.history, w.errors.history
    masks = E.read_masks(tmp_path / "masks")
    assert sorted(masks) == list(range(9)) and np.array_equal(masks[6], labels[6])
    coco = E.read_coco(tmp_path / "labels.json")
    assert np.array_equal(coco.masks[4], labels[4])
    assert E.probe_video(tmp_path / "overlay.mp4")["frames"] == 9
    close(w)


# -- keypoints ----------------------------------------------------------------------------------------
def test_keypoint_workflow_on_the_demo(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path)
    assert w.open_path(DEMO_VIDEO, ask=False)
    schema = tmp_path / "schema.yaml"
    schema.write_text("names: [blob_centre, blob_eye, star_centre]\nskeleton: [[blob_centre, blob_eye]]\n")
    assert w.keypoints_panel.load_schema(schema), w.errors.history
    s = w.doc.session
    assert s.schema.names == ["blob_centre", "blob_eye", "star_centre"] and s.schema.skeleton == [(0, 1)]
    w.state.set_tool("keypoints")
    assert w.state.layer == "keypoints"

    # place the three points by clicking (the selection advances to the next unplaced point)
    for x, y in ((215, 310), (267, 284), (690, 135)):
        click(qtbot, w.canvas, x, y)
    kp = s.keypoints(0)
    assert kp.visible.all() and np.allclose(kp.xy[1], (267, 284), atol=1.0)
    assert w.doc.undo.count() == 3

    # drag a point, then mark the third absent (it stays absent through propagation)
    drag(qtbot, w.canvas, [(267, 284), (262, 286), (260, 288)])
    assert np.allclose(s.keypoints(0).xy[1], (260, 288), atol=1.0)
    w.state.set_keypoint(2)
    w.actions["keypoint.absent"].trigger()
    assert s.keypoints(0).visible.tolist() == [True, True, False]

    # a second keypoint keyframe at 5, then propagate 1..4
    w.go_to(5)
    qtbot.waitUntil(lambda: w.canvas.frame_index == 5)
    w.state.set_keypoint(0)
    click(qtbot, w.canvas, 222, 305)
    click(qtbot, w.canvas, 272, 280)
    assert s.keyframes("keypoints") == [0, 5]
    w.go_to(0)
    assert w.propagate("forward")
    wait_idle(qtbot, w)
    assert [s.provenance(i, "keypoints").kind for i in range(6)] == ["user"] + ["propagated"] * 4 + ["user"]
    assert not any(s.keypoints(i).visible[2] for i in range(1, 5))
    assert s.provenance(1, "mask").kind == "empty"            # the mask layer was not touched

    # undo the propagation, redo it
    w.undo()
    assert s.provenance(2, "keypoints").kind == "empty"
    w.redo()
    assert s.provenance(2, "keypoints").kind == "propagated"

    # save, reopen, export the CSV and COCO keypoints, read back
    project = tmp_path / "kp-project"
    assert w._save_to(project)
    assert w.open_path(project)
    s2 = w.doc.session
    assert s2.schema.names == s.schema.names and s2.keyframes("keypoints") == [0, 5]
    from engine import export as E
    w.export("csv", tmp_path / "points.csv")
    w.exports.wait()
    w.export("coco", tmp_path / "points.json")
    w.exports.wait()
    assert not w.errors.history, w.errors.history
    back = E.keypoints_from_rows(E.read_keypoints_csv(tmp_path / "points.csv"), s2.schema.names)
    assert sorted(back) == list(range(6))
    assert np.allclose(back[3].xy[0], s2.keypoints(3).xy[0], atol=0.01)
    coco = E.read_coco(tmp_path / "points.json")
    assert np.allclose(coco.keypoints[0].xy[:2], s2.keypoints(0).xy[:2], atol=0.01)
    close(w)


# -- cancel ---------------------------------------------------------------------------------------------
def test_cancel_a_running_propagation(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, scale=0.5)
    w.open_demo()
    s = w.doc.session
    assert w.propagate("forward")                             # 89 frames: far longer than the test waits
    assert w.cancel_button.isVisible()
    qtbot.waitUntil(lambda: (s.status_array() == 2).sum() >= 2, timeout=WAIT_MS)
    qtbot.mouseClick(w.cancel_button, Qt.LeftButton)
    assert not w.propagation.running and not w.cancel_button.isVisible()
    done = int((s.status_array() == 2).sum())
    assert done < 89
    wait_idle(qtbot, w)
    qtbot.wait(200)
    assert int((s.status_array() == 2).sum()) == done          # nothing arrives after Cancel
    assert w.doc.undo.undoText().startswith(f"Propagate forward from frame 0 ({done} frames)")
    assert "Cancelled" in w.message.text()
    w.undo()
    assert (s.status_array() == 2).sum() == 0
    close(w)


# -- crash recovery -------------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_crash_recovery_offers_the_autosave(qtbot, tmp_path):
    from annotator.app import offer_recovery
    w = make_window(qtbot, tmp_path)
    assert w.open_path(DEMO_VIDEO, ask=False)
    w.state.set_brush_size(30)
    scribble(qtbot, w.canvas, 300, 250, 40)
    painted = np.array(w.doc.session.label(0))
    assert w.autosaver.autosave_now(block=True)
    # "crash": the process is gone without closing; its registry entry and autosave stay behind
    entries = w.registry._read()
    for e in entries.values():
        e["pid"] = _dead_pid()
    w.registry._write(entries)
    w.autosaver.key = None                     # so that closing this window does not clean up
    w.autosaver.doc = None
    close(w)

    w2 = make_window(qtbot, tmp_path)
    asked = []
    assert offer_recovery(w2, ask=lambda e: asked.append(e) or "recover")
    assert len(asked) == 1 and asked[0]["video"] == os.path.abspath(DEMO_VIDEO)
    s = w2.doc.session
    assert s.keyframes() == [0] and np.array_equal(s.label(0), painted)
    assert w2.doc.dirty                                        # recovered work is unsaved until saved
    assert w2.registry.pending() == []                         # offered once
    close(w2)
    w3 = make_window(qtbot, tmp_path)
    assert not offer_recovery(w3, ask=lambda e: "recover")     # a clean close leaves nothing to recover
    close(w3)


def test_discarding_a_recovery_removes_it(qtbot, tmp_path):
    from annotator.app import offer_recovery
    reg = RecoveryRegistry(tmp_path / "recovery")
    doc = Document.open_path(DEMO_VIDEO)
    key = reg.register(doc)
    doc.session.set_keyframe(3, np.ones(tuple(reversed(doc.video.size)), np.uint8))
    doc.session.autosave(reg.autosave_root(doc))
    entries = reg._read()
    entries[key]["pid"] = _dead_pid()
    reg._write(entries)
    w = make_window(qtbot, tmp_path)
    assert not offer_recovery(w, ask=lambda e: "discard")
    assert reg.pending() == [] and not reg.autosave_root(doc).exists()
    doc.close()
    close(w)


# -- closing with unsaved work ----------------------------------------------------------------------------
def test_close_asks_when_there_are_unsaved_changes(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path)
    assert w.open_path(DEMO_VIDEO, ask=False)
    assert not w.doc.dirty
    drag(qtbot, w.canvas, [(100, 100), (140, 120)])
    asked = []
    w.confirm_close = lambda: asked.append(1) or "cancel"
    assert not w.close() and w.isVisible() and w.doc is not None   # Cancel keeps the window and the work
    w.confirm_close = lambda: "save"
    w.doc.project_dir = tmp_path / "saved-on-close"
    assert w.close()
    assert (tmp_path / "saved-on-close" / "project.json").is_file()
    assert asked == [1]
