"""engine.export: COCO RLE against hand-derived pycocotools strings, and every format written from a
session and read back exactly."""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from engine import export as ex
from engine.errors import AffinityError, Cancelled
from engine.labels import Keypoints, KeypointSchema, read_mask
from engine.propagate import CancelToken
from engine.session import AnnotationSession
from engine.video import VideoSource

W, H = 63, 45   # odd on purpose: the video export must pad to even sides


# -- RLE ---------------------------------------------------------------------------------------------
# Each string is derived by hand from pycocotools' rleEncode/rleToString (maskApi.c): counts over the
# column-major mask starting with the 0-run; count i (i > 2) is stored as counts[i] - counts[i-2];
# 5-bit groups, 0x20 = continue, 0x10 in the last group = negative, +48.
CASES = [
    (np.zeros((2, 2)), [4], "4"),
    (np.ones((2, 2)), [0, 4], "04"),
    # column-major: the right column is set -> 2 zeros then 2 ones (row-major would give 1,1,1,1)
    (np.array([[0, 1], [0, 1]]), [2, 2], "22"),
    # i=3 and i=4 store 1 - 1 = 0 -> '0'
    (np.array([[1, 1], [0, 0]]), [0, 1, 1, 1, 1], "01100"),
    # delta -1 at i=3: -1 & 31 = 31, -1 >> 5 = -1 and bit 0x10 set -> stop -> chr(31+48) = 'O'
    (np.array([[0, 1, 1, 0, 0, 0, 1]]).T, [1, 2, 3, 1], "123O"),
    # 100 = 0b11_00100: low group 4 | 0x20 (more) = 36 -> 'T', then 3 -> '3'
    (np.zeros((10, 10)), [100], "T3"),
    # 40 zeros then 60 ones: 40 -> 8|0x20=40 -> 'X', 1 -> '1'; 60 -> 28|0x20 (0x10 set, x=1 != -1) =
    # 60 -> 'l', then 1 -> '1'
    (np.pad(np.ones((10, 6)), ((0, 0), (4, 0))), [40, 60], "X1l1"),
]


@pytest.mark.parametrize("mask,counts,string", CASES)
def test_rle_matches_pycocotools_strings(mask, counts, string):
    assert ex._runs(mask) == counts
    rle = ex.rle_encode(mask)
    assert rle == {"size": list(mask.shape), "counts": string}
    np.testing.assert_array_equal(ex.rle_decode(rle), mask.astype(bool))
    np.testing.assert_array_equal(ex.rle_decode({"size": list(mask.shape), "counts": counts}), mask.astype(bool))
    np.testing.assert_array_equal(ex.rle_decode({"size": list(mask.shape), "counts": string.encode()}), mask.astype(bool))
    assert ex.rle_area(rle) == int(mask.sum())


def test_rle_large_deltas_round_trip():
    # Runs with large positive and negative deltas exercise multi-group signed counts.
    m = np.zeros((300, 7), bool)
    m[:250, 0] = True
    m[3:5, 1] = True
    m[:, 3] = True
    m[100:101, 6] = True
    runs = ex._runs(m)
    assert runs[0] == 0 and sum(runs) == m.size
    back = ex._decompress(ex._compress(runs))
    assert back == runs
    np.testing.assert_array_equal(ex.rle_decode(ex.rle_encode(m)), m)


def test_rle_random_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(300):
        h, w = rng.integers(1, 30, 2)
        m = rng.random((h, w)) < rng.random()
        np.testing.assert_array_equal(ex.rle_decode(ex.rle_encode(m)), m)


@pytest.mark.parametrize("rle", [{"size": [2, 2], "counts": [1, 2]},   # covers 3 of 4 pixels
                                 {"size": [2, 2], "counts": "4A"},      # 'A' = 0x11: a final group with the sign bit -> -31
                                 {"size": [2, 2], "counts": "T"},       # ends inside a count
                                 {"counts": "4"}])
def test_rle_malformed_raises(rle):
    with pytest.raises(ValueError):
        ex.rle_decode(rle)


def test_mask_bbox_is_pixel_extent():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    assert ex.mask_bbox(m) == [3.0, 2.0, 6.0, 3.0]


# -- a session to export -----------------------------------------------------------------------------
@pytest.fixture()
def video(tmp_path) -> VideoSource:
    rng = np.random.default_rng(0)
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(d / f"f{i:03d}.png")
    return VideoSource.open(d, fps=12.5)


SCHEMA = KeypointSchema(["nose", "left ear", "right ear"], skeleton=[(0, 1), (0, 2)])


def result(index, keyframe, mask=None, keypoints=None, confidence=0.75):
    return SimpleNamespace(index=index, keyframe=keyframe, mask=mask, keypoints=keypoints,
                           confidence=confidence, soft=None, is_keyframe=False)


@pytest.fixture()
def session(video) -> AnnotationSession:
    s = AnnotationSession(video, SCHEMA, {1: {"name": "cat"}, 2: {"name": "dog", "colour": (10, 200, 30)}})
    m0 = np.zeros((H, W), np.uint8)
    m0[5:20, 3:30] = 1
    m0[30:44, 40:62] = 2
    s.set_keyframe(0, m0)
    m1 = np.roll(m0, 2, axis=1)
    assert s.apply_result(result(1, 0, mask=m1, confidence=0.8))
    s.set_keyframe(3, np.where(m0 == 2, 2, 0).astype(np.uint8))
    s.set_keyframe(0, Keypoints([[3.25, 4.5], [10.1, 20.7], [0, 0]], [True, True, False]))
    assert s.apply_result(result(2, 0, keypoints=Keypoints([[5, 6], [11, 21], [40.5, 30]], [True] * 3),
                                 confidence=0.6))
    return s


def test_masks_folder_round_trip(session, tmp_path):
    out = tmp_path / "masks"
    (out).mkdir()
    (out / "stale.txt").write_text("from an earlier export")
    seen = []
    summary = ex.export_masks(session, out, progress=lambda d, t: seen.append((d, t)))
    assert summary["frames"] == 3 and seen[-1] == (3, 3)
    assert sorted(os.listdir(out)) == ["00000.png", "00001.png", "00003.png"]   # replaced whole
    back = ex.read_masks(out)
    for i in (0, 1, 3):
        np.testing.assert_array_equal(back[i], session.label(i))
    with Image.open(out / "00000.png") as im:
        assert im.mode == "P"   # DAVIS palette PNG
    assert list(tmp_path.glob(".masks*")) == []   # no staging left


def test_masks_cancel_leaves_previous_folder(session, tmp_path):
    out = tmp_path / "masks"
    ex.export_masks(session, out)
    before = sorted(os.listdir(out))
    tok = CancelToken()
    with pytest.raises(Cancelled):
        ex.export_masks(session, out, progress=lambda d, t: tok.set(), cancel=tok)
    assert sorted(os.listdir(out)) == before and list(tmp_path.glob(".masks*")) == []


def test_coco_round_trip(session, tmp_path):
    path = tmp_path / "coco.json"
    summary = ex.export_coco(session, path)
    doc = json.loads(path.read_text())
    assert summary["frames"] == 4   # frames 0, 1, 3 (masks) and 2 (keypoints)
    assert [im["frame_index"] for im in doc["images"]] == [0, 1, 2, 3]
    assert doc["images"][0] == {"id": 1, "file_name": "f000.png", "width": W, "height": H, "frame_index": 0}
    cats = {c["id"]: c for c in doc["categories"]}
    assert cats[1]["name"] == "cat" and cats[2]["name"] == "dog"
    kc = cats[ex.KEYPOINT_CATEGORY_ID]
    assert kc["keypoints"] == SCHEMA.names and kc["skeleton"] == [[1, 2], [1, 3]]   # 1-based
    masks = [a for a in doc["annotations"] if "segmentation" in a]
    assert {a["iscrowd"] for a in doc["annotations"]} == {0}
    a0 = next(a for a in masks if a["frame_index"] == 0 and a["category_id"] == 1)
    assert a0["area"] == 15 * 27 and a0["bbox"] == [3.0, 5.0, 27.0, 15.0] and a0["source"] == "keyframe"
    assert isinstance(a0["segmentation"]["counts"], str) and a0["segmentation"]["size"] == [H, W]
    kps = [a for a in doc["annotations"] if "keypoints" in a]
    k0 = next(a for a in kps if a["frame_index"] == 0)
    assert k0["keypoints"] == [3.25, 4.5, 2, 10.1, 20.7, 2, 0, 0, 0] and k0["num_keypoints"] == 2
    back = ex.read_coco(path)
    for i in (0, 1, 3):
        np.testing.assert_array_equal(back.masks[i], session.label(i))
    for i in (0, 2):
        kp = session.keypoints(i)
        np.testing.assert_array_equal(back.keypoints[i].visible, kp.visible)
        np.testing.assert_array_equal(back.keypoints[i].xy[kp.visible], kp.xy[kp.visible])   # exact float32


def test_coco_without_stale(session, tmp_path):
    # A new keyframe between 0 and 1's source would make 1 stale; here: re-set keyframe 0's mask.
    session.set_keyframe(0, session.label(0).copy())
    assert session.provenance(1, "mask").kind == "stale"
    doc = ex.coco_document(session, include_stale=False)
    assert 1 not in {a["frame_index"] for a in doc["annotations"] if "segmentation" in a}
    doc = ex.coco_document(session)
    assert any(a["frame_index"] == 1 and a["source"] == "stale" for a in doc["annotations"])


def test_csv_round_trip(session, tmp_path):
    path = tmp_path / "points.csv"
    summary = ex.export_keypoints_csv(session, path)
    assert summary == {"format": "csv", "path": str(path), "frames": 2, "rows": 6}
    lines = path.read_text().splitlines()
    assert lines[0] == "frame,point,x,y,visible,source,confidence"
    assert lines[1] == "0,nose,3.25,4.5,1,keyframe,1"
    assert lines[3] == "0,right ear,,,0,keyframe,1"
    rows = ex.read_keypoints_csv(path)
    assert [(r.frame, r.point, r.source) for r in rows][3:] == [(2, "nose", "propagated"), (2, "left ear", "propagated"),
                                                                (2, "right ear", "propagated")]
    assert rows[4].confidence == pytest.approx(0.6)
    back = ex.keypoints_from_rows(rows, SCHEMA.names)
    for i in (0, 2):
        kp = session.keypoints(i)
        np.testing.assert_array_equal(back[i].visible, kp.visible)
        np.testing.assert_array_equal(back[i].xy[kp.visible], kp.xy[kp.visible])


def test_overlay_video(session, tmp_path):
    path = tmp_path / "overlay.mp4"
    seen = []
    s = ex.export_overlay_video(session, path, opacity=1.0, progress=lambda d, t: seen.append(d))
    assert seen == [1, 2, 3, 4, 5]
    info = ex.probe_video(path)
    assert info["frames"] == 5 and (info["width"], info["height"]) == (W + 1, H + 1)
    assert info["fps"] == pytest.approx(12.5) and info["codec"] in ("h264", "mpeg4") and s["codec"]
    # The labels are drawn: at full opacity the inside of object 2 ("dog", (10, 200, 30)) is its colour.
    with VideoSource.open(path) as v:
        px = v.frame(0)[37, 50].astype(int)
    assert np.abs(px - (10, 200, 30)).max() < 40
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_overlay_video_cancel_removes_temp(session, tmp_path):
    tok = CancelToken()
    with pytest.raises(Cancelled):
        ex.export_overlay_video(session, tmp_path / "o.mp4", progress=lambda d, t: tok.set(), cancel=tok)
    assert list(tmp_path.iterdir()) == [tmp_path / "frames"]


def test_render_overlay_draws_keypoints_and_mask():
    frame = np.zeros((40, 40, 3), np.uint8)
    m = np.zeros((40, 40), np.uint8)
    m[:10, :10] = 1
    out = ex.render_overlay(frame, m, {1: {"colour": (200, 0, 0)}},
                            Keypoints([[30, 30], [np.nan, np.nan]], [True, False]),   # absent = NaN
                            KeypointSchema(["a", "b"], colours=[(0, 0, 255), (0, 255, 0)]), opacity=0.5)
    assert tuple(out[5, 5]) == (100, 0, 0)       # blended half-way
    assert tuple(out[9, 5]) == (200, 0, 0)       # outline in full colour
    assert out[30, 30, 2] > 200                  # the visible point
    assert out[35, 5].max() == 0                 # the absent point is not drawn


def test_nothing_to_export_and_unwritable(video, tmp_path):
    s = AnnotationSession(video)
    with pytest.raises(ex.ExportError, match="nothing to export") as e:
        ex.export_masks(s, tmp_path / "m")
    assert e.value.path == str(tmp_path / "m")
    with pytest.raises(ex.ExportError, match="no keypoint schema"):
        ex.export_keypoints_csv(s, tmp_path / "k.csv")
    with pytest.raises(ex.ExportError, match="nothing to export"):
        ex.export_coco(s, tmp_path / "c.json")
    m = np.zeros((H, W), np.uint8)
    m[1, 1] = 1
    s.set_keyframe(0, m)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ex.ExportError, match="cannot write") as e:
        ex.export_coco(s, blocker / "c.json")   # parent is a file
    assert isinstance(e.value, AffinityError)


def test_readers_name_the_bad_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"images": [{"id": 1, "width": 2, "height": 2}], "categories": [],'
                 '"annotations": [{"image_id": 1, "category_id": 1, "segmentation": {"size": [2, 2], "counts": "5"}}]}')
    with pytest.raises(ex.ExportError, match="malformed COCO") as e:
        ex.read_coco(p)
    assert e.value.path == str(p)
    c = tmp_path / "bad.csv"
    c.write_text("frame,point\n1,a\n")
    with pytest.raises(ex.ExportError, match="header"):
        ex.read_keypoints_csv(c)
    with pytest.raises(ex.ExportError, match="does not exist"):
        ex.read_coco(tmp_path / "missing.json")


def test_dispatch(session, tmp_path):
    assert ex.export(session, "csv", tmp_path / "k.csv")["rows"] == 6
    with pytest.raises(AffinityError, match="format"):
        ex.export(session, "gif", tmp_path / "x.gif")
