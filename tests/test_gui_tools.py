"""Painting tools, navigation keys, the timeline, bad files, keymap and settings of the app."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QPointF, Qt  # noqa: E402

from annotator import tools  # noqa: E402
from annotator.keymap import Keymap  # noqa: E402
from annotator.keypoints_panel import read_schema, schema_from_text  # noqa: E402
from engine.errors import LabelError  # noqa: E402
from engine.labels import write_mask  # noqa: E402
from tests.test_gui_app import click, drag, make_window, wait_idle  # noqa: E402

W, H = 160, 120


@pytest.fixture
def folder(tmp_path):
    """A 12-frame image folder with a bright square drifting right."""
    d = tmp_path / "frames"
    d.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(40, 90, (H, W, 3), dtype=np.uint8)
    for i in range(12):
        img = base.copy()
        img[40:80, 30 + 2 * i:70 + 2 * i] = (230, 200, 60)
        Image.fromarray(img).save(d / f"{i:05d}.png")
    return d


@pytest.fixture
def win(qtbot, tmp_path, folder):
    w = make_window(qtbot, tmp_path, scale=1.0)
    assert w.open_path(folder, ask=False), w.errors.history
    yield w
    w.confirm_close = lambda: "discard"
    w.close()


# -- painting tools -------------------------------------------------------------------------------
def test_brush_eraser_fill_polygon_and_paint_behind(qtbot, win):
    s, c = win.doc.session, win.canvas
    win.state.set_brush_size(10)
    drag(qtbot, c, [(20, 20), (60, 20)])
    m = s.label(0)
    assert m[20, 20:61].all() and m[20, 20] == 1 and not m[40, 40]
    assert win.doc.undo.count() == 1                         # one stroke = one undo step

    oid2 = win.objects_panel.add_object()
    assert oid2 == 2 and win.state.object_id == 2
    win.state.set_tool("polygon")
    for p in ((10, 10), (70, 10), (70, 50)):
        click(qtbot, c, *p)
    qtbot.keyClick(c, Qt.Key_Return)
    m = s.label(0)
    assert m[20, 60] == 2 and m[45, 68] == 2 and m[40, 15] == 0   # painted over object 1

    win.objects_panel.select_number(1)
    win.state.set_paint_behind(True)
    win.state.set_tool("brush")
    drag(qtbot, c, [(50, 15), (50, 45)])
    assert s.label(0)[20, 50] == 2                           # behind: object 2 keeps its pixels
    assert s.label(0)[42, 50] == 1                           # and background is claimed

    win.state.set_tool("fill")
    click(qtbot, c, 150, 110)                                # fill the background with object 1
    assert (s.label(0) == 1).sum() > 0.5 * W * H
    win.undo()
    assert s.label(0)[110, 150] == 0

    win.state.set_paint_behind(False)
    win.state.set_tool("eraser")
    drag(qtbot, c, [(10, 20), (80, 20)])
    assert not s.label(0)[20, 10:81].any()
    n = win.doc.undo.count()
    for _ in range(n):
        win.undo()
    assert s.label(0) is None and s.keyframes() == []
    for _ in range(n):
        win.redo()
    assert not s.label(0)[20, 10:81].any() and s.keyframes() == [0]


def test_paint_ops_touch_only_their_rectangle():
    m = np.zeros((50, 60), np.uint8)
    rect = tools.paint_segment(m, (10, 10), (40, 10), 3, 1)
    assert rect == (6, 6, 45, 15) and m[10, 10:41].all() and not m[20:].any()
    m2 = np.zeros((50, 60), np.uint8)
    m2[:, 30] = 2
    assert tools.flood_fill(m2, (5, 5), 1) == (0, 0, 30, 50) and (m2 == 1).sum() == 1500
    assert tools.flood_fill(m2, (40, 5), 3, behind=True) is not None
    assert tools.flood_fill(m2, (40, 5), 4, behind=True) is None   # not background any more


def test_objects_rename_hide_delete_and_colour(qtbot, win):
    s = win.doc.session
    drag(qtbot, win.canvas, [(20, 20), (40, 20)])
    win.objects_panel.list.item(0).setText("cat")
    assert s.objects[1]["name"] == "cat"
    win.objects_panel.list.item(0).setCheckState(Qt.Unchecked)
    assert 1 in win.state.hidden
    assert win.canvas.overlay_item.overlay.buffer[20, 30] == 0     # hidden: transparent on screen
    win.objects_panel.list.item(0).setCheckState(Qt.Checked)
    assert win.canvas.overlay_item.overlay.buffer[20, 30] != 0
    win.objects_panel.remove_selected(confirm=False)
    assert 1 not in s.objects and not (s.label(0) == 1).any()
    win.undo()
    assert s.objects[1]["name"] == "cat" and (s.label(0) == 1).any()


# -- navigation -------------------------------------------------------------------------------------
def test_keys_timeline_and_jumps(qtbot, win):
    s = win.doc.session
    drag(qtbot, win.canvas, [(40, 50), (60, 60)])
    win.go_to(6)
    qtbot.waitUntil(lambda: win.canvas.frame_index == 6)
    drag(qtbot, win.canvas, [(40, 50), (60, 60)])
    win.go_to(0)
    assert win.propagate("forward")
    wait_idle(qtbot, win)

    def key(k, mod=Qt.NoModifier):
        qtbot.keyClick(win.canvas, k, mod)         # keys go to the focused widget
        qtbot.waitUntil(lambda: win.canvas.frame_index == win.state.frame)
        return win.state.frame

    win.canvas.setFocus()
    assert key(Qt.Key_Home) == 0
    assert key(Qt.Key_Right) == 1
    assert key(Qt.Key_Right, Qt.ShiftModifier) == 11
    assert key(Qt.Key_Left) == 10
    assert key(Qt.Key_End) == 11
    assert key(Qt.Key_Left, Qt.ShiftModifier) == 1
    assert key(Qt.Key_Right, Qt.ControlModifier) == 6            # next keyframe
    assert key(Qt.Key_Left, Qt.ControlModifier) == 0             # previous keyframe
    # next low-confidence frame: make frame 3 look unsure
    s._layers["mask"].conf[3] = 0.01
    win.jump_low_confidence()
    assert win.state.frame == 3
    # click on the timeline scrubs
    tl = win.timeline
    pt = tl.view.mapViewToScene(QPointF(9, 0.5))
    qtbot.mouseClick(tl.plot.viewport(), Qt.LeftButton, pos=tl.plot.mapFromScene(pt))
    assert win.state.frame == 9
    # zoom keys change the canvas scale; fit brings it back
    z = win.canvas.zoom_level()
    win.actions["view.zoom_in"].trigger()
    assert win.canvas.zoom_level() > z * 1.2
    win.actions["view.fit"].trigger()
    assert abs(win.canvas.zoom_level() - z) < 1e-6
    # brush size keys
    b = win.state.brush_size
    win.actions["tool.brush_larger"].trigger()
    assert win.state.brush_size > b
    # play runs and stops at the end
    win.go_to(9)
    win.toggle_play(True)
    qtbot.waitUntil(lambda: not win.play_timer.isActive(), timeout=5000)
    assert win.state.frame == 11


def test_auto_repropagation_after_a_correction(qtbot, tmp_path, folder):
    w = make_window(qtbot, tmp_path, scale=1.0, propagation__auto_repropagate=True)
    assert w.open_path(folder, ask=False)
    s = w.doc.session
    drag(qtbot, w.canvas, [(40, 50), (60, 60)])
    qtbot.wait(400)                                         # no stale frames: nothing runs
    assert not w.propagation.busy
    assert w.propagate("forward")
    wait_idle(qtbot, w)
    w.go_to(5)
    qtbot.waitUntil(lambda: w.canvas.frame_index == 5)
    drag(qtbot, w.canvas, [(100, 100), (110, 105)])         # correction: 6..11 go stale, then re-run
    qtbot.waitUntil(lambda: w.propagation.busy, timeout=3000)
    wait_idle(qtbot, w)
    assert [s.provenance(i).kind for i in range(12)] == ["user"] + ["propagated"] * 4 + ["user"] + ["propagated"] * 6
    assert s.provenance(9).source == 5
    w.close()


# -- bad files ---------------------------------------------------------------------------------------
def test_bad_files_get_a_dialog_and_the_session_survives(qtbot, win, tmp_path):
    s = win.doc.session
    drag(qtbot, win.canvas, [(20, 20), (40, 20)])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    assert not win.open_path(broken, ask=False)
    title, text = win.errors.history[-1]
    assert "broken.mp4" in title and "broken.mp4" in text
    assert win.doc.session is s and s.keyframes() == [0]

    project = tmp_path / "bad-project"
    project.mkdir()
    (project / "project.json").write_text("{ not json")
    assert not win.open_path(project, ask=False)
    assert "project.json" in win.errors.history[-1][1] and "JSON" in win.errors.history[-1][1]

    wrong = tmp_path / "wrong.png"
    write_mask(wrong, np.ones((10, 10), np.uint8))
    assert not win.import_mask(wrong)
    assert "wrong.png" in win.errors.history[-1][1] and "10x10" in win.errors.history[-1][1]
    good = tmp_path / "good.png"
    m = np.zeros((H, W), np.uint8)
    m[5:15, 5:15] = 4
    write_mask(good, m)
    assert win.import_mask(good)
    assert 4 in s.objects and s.label(0)[10, 10] == 4

    bad_schema = tmp_path / "schema.yaml"
    bad_schema.write_text("names: [a, b]\nskeleton: [[a, zz]]\n")
    assert not win.keypoints_panel.load_schema(bad_schema)
    assert "schema.yaml" in win.errors.history[-1][1]
    assert s.schema is None

    # a project folder that is somebody else's: saving into it is refused, nothing lost
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert not win._save_to(foreign)
    assert "foreign" in win.errors.history[-1][1] and (foreign / "notes.txt").read_text() == "mine"
    assert win.doc.dirty


def test_schema_files_and_in_app_definition(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"names": ["a", "b", "c"], "skeleton": [[0, 1], ["b", "c"]]}))
    assert read_schema(p).skeleton == [(0, 1), (1, 2)]
    assert schema_from_text("nose\nleft\nright\n", "nose-left nose-2").skeleton == [(0, 1), (0, 2)]
    with pytest.raises(LabelError):
        schema_from_text("a\nb", "a-c")
    with pytest.raises(LabelError):
        read_schema(tmp_path / "missing.yaml")


# -- keymap ---------------------------------------------------------------------------------------------
def test_keymap_user_override(tmp_path, qtbot):
    user = tmp_path / "keymap.json"
    user.write_text(json.dumps({"nav.next": ["D"], "no.such.action": ["X"]}))
    km = Keymap(user=user)
    assert km.sequences("nav.next") == ["D"] and km.sequences("file.save") == ["Ctrl+S"]
    assert any("no.such.action" in p for p in km.problems)
    assert Keymap(user=tmp_path / "absent.json").conflicts() == []


def test_shortcuts_dialog_lists_every_action(win):
    from annotator.dialogs import ShortcutsDialog
    dlg = ShortcutsDialog(win.actions, win.keymap, win)
    texts = {dlg.table.item(r, 2).text(): dlg.table.item(r, 1).text() for r in range(dlg.table.rowCount())}
    assert texts["file.save"] == "Ctrl+S" and texts["nav.play"] == "Space" and texts["object.select_1"] == "1"


# -- inspector ------------------------------------------------------------------------------------------
def test_inspector_dock_follows_the_canvas(qtbot, win):
    pytest.importorskip("annotator.inspector")
    win.actions["view.inspector"].trigger()
    dock = win.inspector
    assert dock is not None and dock.isVisible() and win.state.tool == "inspect"
    results = []
    dock.result_ready.connect(results.append)
    win.go_to(3)
    qtbot.waitUntil(lambda: dock.frame_a() == 3)
    click(qtbot, win.canvas, 50, 60)
    qtbot.waitUntil(lambda: bool(results), timeout=60_000)
    assert dock.frame_b() == 4
    win.actions["view.inspector"].trigger()
    assert not dock.isVisible()
