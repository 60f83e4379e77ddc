"""AnnotationSession: provenance and staleness, planning, results, objects, notifications, save/load."""
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np
import pytest

from engine import labels as L
from engine.errors import ConfigError, LabelError, ProjectError
from engine.labels import Keypoints, KeypointSchema
from engine.session import EMPTY, PROPAGATED, STALE, USER, AnnotationSession, Provenance, Segment

W, H = 8, 6


class FakeVideo:
    def __init__(self, n=10, size=(W, H), path="/nonexistent/clip.mp4", sha1="abc"):
        self.n, self.size, self.path, self.sha1 = n, size, path, sha1

    def __len__(self):
        return self.n

    def fingerprint(self):
        return {"size": list(self.size), "frames": self.n, "sha1": self.sha1}


@dataclass
class Result:
    index: int
    keyframe: int
    mask: "np.ndarray | None" = None
    keypoints: "Keypoints | None" = None
    soft: "np.ndarray | None" = None
    confidence: float = 0.5
    is_keyframe: bool = False


class FakePropagator:
    """Copies the keyframe label; same frame order and stopping rules as engine.propagate."""

    def __init__(self):
        self.calls = []

    def run(self, video, keyframes, start, direction="forward", stop=None, cancel=None):
        self.calls.append((sorted(keyframes), start, direction, stop))
        n = len(video)
        if direction == "forward":
            end = min([k for k in keyframes if k > start] + [n if stop is None else min(stop, n)])
            order = range(start + 1, end)
        else:
            end = max([k for k in keyframes if k < start] + [-1 if stop is None else max(stop, -1)])
            order = range(start - 1, end, -1)
        lab = keyframes[start]
        yield Result(start, start, mask=lab, confidence=1.0, is_keyframe=True)
        for i in order:
            if cancel is not None and cancel.is_set():
                return
            yield Result(i, start, mask=lab.copy(), soft=np.zeros((2, 2, 2), np.float32), confidence=0.9)


def mask(value=1, seed=None):
    if seed is None:
        return np.full((H, W), value, np.uint8)
    return np.random.default_rng(seed).integers(0, 4, (H, W)).astype(np.uint8)


def kinds(s, frames, layer=None):
    return [s.provenance(i, layer).kind for i in frames]


def fill(s, keyframe, frames, value=1):
    for i in frames:
        assert s.apply_result(Result(i, keyframe, mask=mask(value)))


# -- provenance and staleness ----------------------------------------------------------------------
def test_staleness_rules_of_the_brief():
    s = AnnotationSession(FakeVideo(10))
    s.set_keyframe(0, mask(1))
    fill(s, 0, range(1, 10))
    assert kinds(s, range(10)) == ["user"] + ["propagated"] * 9
    assert s.provenance(3) == Provenance("propagated", 0)

    s.set_keyframe(5, mask(2))                       # splits keyframe 0's forward segment
    assert kinds(s, range(1, 5)) == ["propagated"] * 4
    assert s.provenance(5) == Provenance("user", None)
    assert kinds(s, range(6, 10)) == ["stale"] * 4
    assert s.provenance(7) == Provenance("stale", 0)
    assert s.label(7)[0, 0] == 1                      # stale frames keep their label

    s.set_keyframe(0, mask(3))                       # new label of keyframe 0
    assert kinds(s, range(1, 5)) == ["stale"] * 4

    assert s.remove_keyframe(5)
    assert s.provenance(5) == Provenance("empty", None) and s.label(5) is None
    assert kinds(s, range(6, 10)) == ["stale"] * 4
    assert not s.remove_keyframe(5)
    assert s.status_array().tolist() == [USER] + [STALE] * 4 + [EMPTY] + [STALE] * 4
    assert s.status_array().dtype == np.int8


def test_new_keyframe_splits_backward_segments_and_spares_others():
    s = AnnotationSession(FakeVideo(12))
    s.set_keyframe(10, mask(1))
    fill(s, 10, range(0, 10))
    s.set_keyframe(4, mask(2))
    assert kinds(s, range(0, 4)) == ["stale"] * 4    # their path from 10 now crosses 4
    assert kinds(s, range(5, 10)) == ["propagated"] * 5
    fill(s, 4, range(5, 7))                          # nearer to 4 than to 10
    s.set_keyframe(10, mask(3))                      # only frames from 10 depend on it
    assert kinds(s, [5, 6, 7, 8, 9]) == ["propagated", "propagated", "stale", "stale", "stale"]
    s.remove_keyframe(4)                             # 5, 6 came from 4; 0..3 were stale already
    assert kinds(s, range(0, 7)) == ["stale"] * 4 + ["empty"] + ["stale"] * 2


def test_confidence_and_arrays():
    s = AnnotationSession(FakeVideo(5))
    s.set_keyframe(0, mask(1))
    s.apply_result(Result(1, 0, mask=mask(1), confidence=0.25))
    assert s.confidence(0) == 1.0 and s.confidence(1) == 0.25 and s.confidence(2) is None
    c = s.confidence_array()
    assert c[:2].tolist() == [1.0, 0.25] and np.isnan(c[2:]).all()
    with pytest.raises(IndexError):
        s.label(5)


# -- planning --------------------------------------------------------------------------------------
def test_plan_both_directions_with_several_keyframes():
    s = AnnotationSession(FakeVideo(10))
    assert s.plan(3) == [] and s.plan(3, "both") == []
    s.set_keyframe(2, mask(1))
    s.set_keyframe(6, mask(2))
    v2, v6 = (s.plan(2, "forward")[0].version, s.plan(6, "forward")[0].version)
    (f,) = s.plan(4, "forward")
    assert f == Segment(2, 3, 6, "forward", v2, "mask") and list(f.frames) == [3, 4, 5] and len(f) == 3
    (b,) = s.plan(4, "backward")
    assert (b.keyframe, b.start, b.stop, list(b.frames)) == (6, 5, 2, [5, 4, 3])
    (b,) = s.plan(1, "backward")
    assert (b.keyframe, list(b.frames), b.stop) == (2, [1, 0], -1)
    assert s.plan(1, "forward") == []
    (f,) = s.plan(9, "forward")
    assert (f.keyframe, list(f.frames), f.stop) == (6, [7, 8, 9], 10)
    both = s.plan(6, "both")
    assert [(x.keyframe, x.direction, list(x.frames)) for x in both] == [(6, "forward", [7, 8, 9]),
                                                                          (6, "backward", [5, 4, 3])]
    s.set_keyframe(3, mask(1))
    assert s.plan(2, "forward") == []                # adjacent keyframes: nothing to run
    assert s.plan(2, "backward")[0].version == v2 and s.plan(6, "forward")[0].version == v6
    with pytest.raises(ConfigError):
        s.plan(2, "sideways")


def test_plan_all_splits_gaps_and_skips_valid_halves():
    s = AnnotationSession(FakeVideo(12))
    s.set_keyframe(2, mask(1))
    s.set_keyframe(7, mask(2))
    segs = s.plan_all()
    assert [(x.keyframe, x.direction, list(x.frames)) for x in segs] == [
        (2, "backward", [1, 0]), (2, "forward", [3, 4]), (7, "backward", [6, 5]), (7, "forward", [8, 9, 10, 11])]
    prop = FakePropagator()
    for seg in segs:
        list(s.propagate(prop, seg))
    assert s.plan_all() == []
    assert s.status_array().tolist() == [PROPAGATED] * 2 + [USER] + [PROPAGATED] * 4 + [USER] + [PROPAGATED] * 4
    assert [s.provenance(i).source for i in (3, 4, 5, 6)] == [2, 2, 7, 7]

    s.set_keyframe(7, mask(3))                       # only keyframe 7's runs are needed again
    assert [(x.keyframe, x.direction) for x in s.plan_all()] == [(7, "backward"), (7, "forward")]

    t = AnnotationSession(FakeVideo(10))
    t.set_keyframe(0, mask(1))
    t.set_keyframe(4, mask(1))                       # even gap: the middle frame is in both halves
    assert [list(x.frames) for x in t.plan_all()] == [[1, 2], [3, 2], [5, 6, 7, 8, 9]]


# -- results ---------------------------------------------------------------------------------------
def test_apply_result_never_overwrites_keyframes_and_drops_outdated_runs():
    s = AnnotationSession(FakeVideo(10))
    s.set_keyframe(0, mask(1))
    s.set_keyframe(5, mask(2))
    assert not s.apply_result(Result(5, 0, mask=mask(1)))          # a keyframe
    assert not s.apply_result(Result(0, 0, mask=mask(1), is_keyframe=True))
    assert not s.apply_result(Result(3, 9, mask=mask(1)))          # 9 is no keyframe
    assert not s.apply_result(Result(7, 0, mask=mask(1)))          # path crosses keyframe 5
    assert s.label(5)[0, 0] == 2 and s.provenance(5).kind == "user"

    (seg,) = s.plan(0, "forward")
    assert s.apply_result(Result(1, 0, mask=mask(1)), segment=seg)
    s.set_keyframe(0, mask(3))                                     # label changed mid-run
    assert not s.apply_result(Result(2, 0, mask=mask(1)), segment=seg)
    assert s.provenance(2).kind == "empty" and s.provenance(1).kind == "stale"
    (seg,) = s.plan(0, "forward")
    assert not s.apply_result(Result(8, 0, mask=mask(1)), segment=seg)   # outside the segment
    assert s.apply_result(Result(2, 0, mask=mask(3)), segment=seg)

    s.remove_keyframe(5)
    s.set_keyframe(5, mask(2))                       # re-added: versions are never reused
    (old,) = s.plan(5, "forward")
    s.remove_keyframe(5)
    s.set_keyframe(5, mask(2))
    assert not s.apply_result(Result(6, 5, mask=mask(2)), segment=old)


def test_nearer_keyframe_wins():
    s = AnnotationSession(FakeVideo(10))
    s.set_keyframe(0, mask(1))
    s.set_keyframe(9, mask(2))
    fill(s, 9, range(1, 9), value=2)
    assert s.apply_result(Result(3, 0, mask=mask(1)))        # 0 is nearer
    assert not s.apply_result(Result(6, 0, mask=mask(1)))    # 9 is nearer
    s.set_keyframe(9, mask(4))
    assert s.apply_result(Result(6, 0, mask=mask(1)))        # a stale result gives way
    assert s.provenance(6) == Provenance("propagated", 0)


def test_wrong_result_size_is_an_error():
    s = AnnotationSession(FakeVideo(4))
    s.set_keyframe(0, mask(1))
    with pytest.raises(LabelError, match="frame 1"):
        s.apply_result(Result(1, 0, mask=np.zeros((3, 3), np.uint8)))


def test_propagate_generator_passes_all_keyframes_and_applies():
    s = AnnotationSession(FakeVideo(10))
    s.set_keyframe(2, mask(1))
    s.set_keyframe(6, mask(2))
    prop = FakePropagator()
    (seg,) = s.plan(3, "forward")
    out = list(s.propagate(prop, seg))
    assert [r.index for r in out] == [2, 3, 4, 5]
    assert prop.calls == [([2, 6], 2, "forward", 6)]
    assert kinds(s, [3, 4, 5]) == ["propagated"] * 3 and s.confidence(4) == pytest.approx(0.9)
    assert s.soft(3).dtype == np.float16

    (seg,) = s.plan(6, "forward")
    got = list(s.propagate(prop, seg, apply=False))
    assert len(got) == 4 and s.provenance(7).kind == "empty"
    assert all(s.apply_result(r, segment=seg) for r in got[1:])

    class Token:
        def __init__(self):
            self.flag = False

        def is_set(self):
            return self.flag

    tok = Token()
    (seg,) = s.plan(2, "backward")
    gen = s.propagate(prop, seg, cancel=tok)
    next(gen), next(gen)
    tok.flag = True
    assert list(gen) == [] and kinds(s, [1, 0]) == ["propagated", "empty"]

    (seg,) = s.plan(6, "backward")
    s.set_keyframe(6, mask(3))                       # outdated before it starts: runs nothing
    assert list(s.propagate(prop, seg)) == [] and len(prop.calls) == 3


def test_soft_maps_are_bounded_per_run():
    s = AnnotationSession(FakeVideo(30), soft_frames=4)
    s.set_keyframe(0, mask(1))
    list(s.propagate(FakePropagator(), s.plan(0)[0]))
    kept = [i for i in range(30) if s.soft(i) is not None]
    assert kept == [26, 27, 28, 29]
    s.set_keyframe(0, mask(2))                       # stale results keep no soft maps
    assert all(s.soft(i) is None for i in range(30))
    t = AnnotationSession(FakeVideo(5), soft_frames=0)
    t.set_keyframe(0, mask(1))
    list(t.propagate(FakePropagator(), t.plan(0)[0]))
    assert all(t.soft(i) is None for i in range(5))


# -- objects and validation ------------------------------------------------------------------------
def test_objects_table_and_auto_added_ids():
    s = AnnotationSession(FakeVideo(5), objects={1: {"name": "cat", "colour": (1, 2, 3)}})
    m = np.zeros((H, W), np.uint8)
    m[0, 0], m[1, 1] = 1, 7
    s.set_keyframe(0, m)
    assert s.objects == {1: {"name": "cat", "colour": (1, 2, 3)},
                         7: {"name": "object 7", "colour": tuple(int(c) for c in L.PALETTE[7])}}
    oid = s.add_object("dog")
    assert oid == 2 and s.objects[2]["colour"] == tuple(int(c) for c in L.PALETTE[2])
    s.rename_object(2, "hound")
    s.set_object_colour(2, (9, 9, 9))
    assert s.objects[2] == {"name": "hound", "colour": (9, 9, 9)}
    s.objects[2]["name"] = "changed outside"         # a copy
    assert s.objects[2]["name"] == "hound"
    with pytest.raises(LabelError, match="colour"):
        s.set_object_colour(2, (300, 0, 0))
    with pytest.raises(LabelError, match="object 42"):
        s.rename_object(42, "x")


def test_delete_object_clears_labels_and_marks_dependents_stale():
    s = AnnotationSession(FakeVideo(10))
    a = np.zeros((H, W), np.uint8)
    a[:, :4], a[:, 4:] = 1, 2
    b = np.full((H, W), 1, np.uint8)
    s.set_keyframe(0, a)
    s.set_keyframe(6, b)
    for i in range(1, 6):
        s.apply_result(Result(i, 0, mask=a.copy()))
    for i in range(7, 10):
        s.apply_result(Result(i, 6, mask=b.copy()))
    s.delete_object(2)
    assert 2 not in s.objects
    assert all(2 not in s.label(i) for i in range(10))
    assert (s.label(0)[:, :4] == 1).all() and (s.label(0)[:, 4:] == 0).all()
    assert kinds(s, range(1, 6)) == ["stale"] * 5          # keyframe 0 held object 2
    assert kinds(s, range(7, 10)) == ["propagated"] * 3    # keyframe 6 did not
    with pytest.raises(LabelError):
        s.delete_object(2)


def test_wrong_size_mask_and_bad_keypoints_are_label_errors():
    s = AnnotationSession(FakeVideo(5))
    with pytest.raises(LabelError) as e:
        s.set_keyframe(3, np.zeros((5, 7), np.uint8))
    assert str(e.value) == "frame 3: mask is 7x5 but the video frames are 8x6"
    with pytest.raises(LabelError, match="2-D"):
        s.set_keyframe(3, np.zeros((H, W, 3), np.uint8))
    with pytest.raises(LabelError, match="0..255"):
        s.set_keyframe(3, np.full((H, W), 300, np.int32))
    with pytest.raises(LabelError, match="no keypoint schema"):
        s.set_keyframe(3, Keypoints([[1, 1]], [True]))
    k = AnnotationSession(FakeVideo(5), schema=KeypointSchema(["nose", "tail"]))
    assert k.default_layer == "keypoints"
    with pytest.raises(LabelError, match="frame 2: keypoint 1 .* outside the 8x6 frame"):
        k.set_keyframe(2, Keypoints([[1, 1], [8, 1]], [True, True]))
    with pytest.raises(LabelError, match="schema has 2"):
        k.set_keyframe(2, Keypoints([[1, 1]], [True]))
    k.set_keyframe(2, Keypoints([[1, 1], [99, 99]], [True, False]))   # an absent point may lie anywhere
    assert k.keyframes() == [2] and s.keyframes() == []
    m = np.zeros((H, W), np.uint8)
    s.set_keyframe(1, m)
    m[0, 0] = 5                                      # the session holds its own copy
    assert s.label(1)[0, 0] == 0 and not s.label(1).flags.writeable


def test_keypoint_layer_is_independent():
    s = AnnotationSession(FakeVideo(6), schema=KeypointSchema(["a", "b"]), objects={1: {"name": "x"}})
    assert s.default_layer == "mask"
    s.set_keyframe(0, mask(1))
    s.set_keyframe(3, Keypoints([[1, 1], [2, 2]], [True, False]))
    assert s.keyframes() == [0] and s.keyframes("keypoints") == [3]
    kp = Keypoints([[1.5, 1], [0, 0]], [True, False])
    assert s.apply_result(Result(4, 3, keypoints=kp))
    assert s.provenance(4, "keypoints") == Provenance("propagated", 3) and s.provenance(4).kind == "empty"
    (seg,) = s.plan(3, "backward", layer="keypoints")
    assert seg.layer == "keypoints" and list(seg.frames) == [2, 1, 0]
    assert s.keypoints(4).xy[0].tolist() == [1.5, 1.0]
    with pytest.raises(ConfigError):
        s.keyframes("boxes")


# -- notifications ---------------------------------------------------------------------------------
def test_notifications_name_what_changed():
    s = AnnotationSession(FakeVideo(10))
    events = []
    cb = lambda kind, frames: events.append((kind, list(frames)))
    s.subscribe(cb)
    s.set_keyframe(0, mask(1))
    assert sorted(events) == [("keyframes", [0]), ("label", [0]), ("objects", []), ("provenance", [0])]
    events.clear()
    fill(s, 0, range(1, 10))
    assert events[:2] == [("label", [1]), ("provenance", [1])] and len(events) == 18
    events.clear()
    s.set_keyframe(5, mask(2))
    assert dict(events) == {"keyframes": [5], "label": [5], "provenance": [5, 6, 7, 8, 9], "objects": []}
    events.clear()
    s.set_keyframe(0, mask(1))
    assert dict(events) == {"label": [0], "provenance": [0, 1, 2, 3, 4]}
    events.clear()
    s.rename_object(1, "x")
    s.set_object_colour(1, (1, 1, 1))
    assert events == [("objects", []), ("objects", list(range(10)))]
    events.clear()
    s.update_settings(topk=5)
    assert events == [("settings", [])]
    s.unsubscribe(cb)
    s.remove_keyframe(5)
    assert events == [("settings", [])]
    got = []
    s.subscribe(lambda kind, frames: got.append(frames))
    s.set_keyframe(5, mask(2))
    assert all(isinstance(f, (range, list)) for f in got)


# -- save / load -----------------------------------------------------------------------------------
def build(video=None):
    schema = KeypointSchema(["nose", "tail", "paw"], skeleton=[(0, 1)])
    s = AnnotationSession(video or FakeVideo(10), schema=schema,
                          objects={1: {"name": "cat", "colour": (10, 20, 30)}}, settings={"topk": 7})
    s.set_keyframe(0, mask(seed=1))
    for i in range(1, 8):
        s.apply_result(Result(i, 0, mask=mask(seed=10 + i), confidence=i / 10))
    s.set_keyframe(5, mask(seed=5))                  # 6, 7 stale
    s.set_keyframe(2, Keypoints([[1.25, 2.5], [0, 0], [7.5, 5.5]], [True, False, True]))
    s.apply_result(Result(3, 2, keypoints=Keypoints([[1.5, 2.5], [0, 0], [7, 5]], [True, False, True]),
                          confidence=0.75))
    s.update_settings(context=20, params={"radius": 12})
    return s


def same(a, b):
    assert a.objects == b.objects
    assert a.schema == b.schema and a.default_layer == b.default_layer
    assert dict(a.settings) == dict(b.settings)
    for layer in ("mask", "keypoints"):
        assert a.keyframes(layer) == b.keyframes(layer)
        assert [a.provenance(i, layer) for i in range(len(a))] == [b.provenance(i, layer) for i in range(len(b))]
        np.testing.assert_array_equal(a.confidence_array(layer), b.confidence_array(layer))
    for i in range(len(a)):
        la, lb = a.label(i), b.label(i)
        assert (la is None) == (lb is None)
        if la is not None:
            assert la.dtype == lb.dtype == np.uint8 and np.array_equal(la, lb)
        ka, kb = a.keypoints(i), b.keypoints(i)
        assert (ka is None) == (kb is None)
        if ka is not None:
            assert ka.visible.tolist() == kb.visible.tolist()
            assert np.array_equal(ka.xy[ka.visible], kb.xy[kb.visible])


def test_save_load_round_trip(tmp_path):
    s = build()
    assert s.dirty
    s.save(tmp_path / "proj")
    assert not s.dirty
    doc = json.loads((tmp_path / "proj" / "project.json").read_text())
    assert doc["format"] == "affinity-annotator.project" and doc["version"] == 1
    assert doc["video"]["fingerprint"] == {"size": [W, H], "frames": 10, "sha1": "abc"}
    assert doc["keyframes"] == {"mask": [0, 5], "keypoints": [2]}
    assert sorted(p.name for p in (tmp_path / "proj" / "labels").iterdir()) == [f"{i:05d}.png" for i in range(8)]
    kp = json.loads((tmp_path / "proj" / "keypoints.json").read_text())
    assert kp["frames"]["2"]["points"] == [[1.25, 2.5], None, [7.5, 5.5]]
    assert kp["frames"]["3"]["kind"] == "propagated" and kp["frames"]["3"]["source"] == 2
    t = AnnotationSession.load(tmp_path / "proj", video=FakeVideo(10))
    same(s, t)
    assert not t.dirty and t.created == s.created and t.modified == s.modified
    assert t.provenance(6) == Provenance("stale", 0)
    # loaded keyframes are live: changing one stales its results
    t.set_keyframe(2, Keypoints([[1, 1], [2, 2], [3, 3]], [True, True, True]))
    assert t.provenance(3, "keypoints").kind == "stale"


def test_resave_rewrites_only_changed_frames_and_removes_emptied(tmp_path, monkeypatch):
    s = build()
    s.save(tmp_path / "p")
    calls = []
    real = L.write_mask
    monkeypatch.setattr(L, "write_mask", lambda path, m: (calls.append(os.path.basename(path)), real(path, m)))
    inode = os.stat(tmp_path / "p" / "labels" / "00001.png").st_ino
    s.save(tmp_path / "p")
    assert calls == []
    assert os.stat(tmp_path / "p" / "labels" / "00001.png").st_ino == inode
    s.set_keyframe(4, mask(2))
    s.remove_keyframe(5)
    s.save(tmp_path / "p")
    assert calls == ["00004.png"]
    assert not (tmp_path / "p" / "labels" / "00005.png").exists()
    same(s, AnnotationSession.load(tmp_path / "p", video=FakeVideo(10)))
    calls.clear()
    s.save(tmp_path / "other")                       # another folder: everything is written
    assert len(calls) == 7


def test_crash_mid_save_leaves_previous_project(tmp_path, monkeypatch):
    s = build()
    s.save(tmp_path / "p")
    before = AnnotationSession.load(tmp_path / "p", video=FakeVideo(10))
    for i in range(10):                              # every frame changes
        s.set_keyframe(i, mask(seed=100 + i))
    s.update_settings(topk=1)
    real, n = L.write_mask, [0]

    def failing(path, m):
        n[0] += 1
        if n[0] == 3:
            raise OSError("disk full")
        real(path, m)

    monkeypatch.setattr(L, "write_mask", failing)
    with pytest.raises(OSError, match="disk full"):
        s.save(tmp_path / "p")
    assert s.dirty
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]      # no staging left over
    same(before, AnnotationSession.load(tmp_path / "p", video=FakeVideo(10)))
    monkeypatch.setattr(L, "write_mask", real)
    s.save(tmp_path / "p")
    same(s, AnnotationSession.load(tmp_path / "p", video=FakeVideo(10)))


def test_interrupted_swap_is_recovered(tmp_path):
    s = build()
    s.save(tmp_path / "p")
    os.replace(tmp_path / "p", tmp_path / ".p.old-123")  # a crash between the two renames
    same(s, AnnotationSession.load(tmp_path / "p", video=FakeVideo(10)))


def test_save_refuses_foreign_folder_and_keeps_other_files(tmp_path):
    s = build()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.txt").write_text("precious")
    with pytest.raises(ProjectError, match="not empty"):
        s.save(tmp_path / "home")
    assert (tmp_path / "home" / "thesis.txt").read_text() == "precious"
    with pytest.raises(ProjectError, match="not a folder"):
        s.save(tmp_path / "home" / "thesis.txt")
    s.save(tmp_path / "p")
    (tmp_path / "p" / "exports").mkdir()
    (tmp_path / "p" / "exports" / "coco.json").write_text("{}")
    s.set_keyframe(9, mask(1))
    s.save(tmp_path / "p")
    assert (tmp_path / "p" / "exports" / "coco.json").read_text() == "{}"


def test_autosave(tmp_path):
    s = build()
    s.save(tmp_path / "p")
    assert not AnnotationSession.has_autosave(tmp_path / "p")
    s.set_keyframe(9, mask(2))
    s.autosave(tmp_path / "p")
    assert s.dirty and AnnotationSession.has_autosave(tmp_path / "p")
    rec = AnnotationSession.load(tmp_path / "p" / ".autosave", video=FakeVideo(10))
    same(s, rec)
    assert AnnotationSession.load(tmp_path / "p", video=FakeVideo(10)).provenance(9).kind == "empty"
    s.autosave(tmp_path / "p")                      # again, over the previous autosave
    s.save(tmp_path / "p")                          # a real save supersedes it
    assert not AnnotationSession.has_autosave(tmp_path / "p")
    s.autosave(tmp_path / "p")
    AnnotationSession.discard_autosave(tmp_path / "p")
    assert not AnnotationSession.has_autosave(tmp_path / "p")
    n = AnnotationSession(FakeVideo(3))             # autosave of a never-saved project
    n.autosave(tmp_path / "new")
    assert AnnotationSession.has_autosave(tmp_path / "new")
    n.save(tmp_path / "new")                        # a folder holding only an autosave is fine


def test_fingerprint_mismatch_names_the_fields(tmp_path):
    build().save(tmp_path / "p")
    with pytest.raises(ProjectError) as e:
        AnnotationSession.load(tmp_path / "p", video=FakeVideo(10, sha1="xyz"))
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "p" / "project.json"))
    assert "first-frames hash: project has 'abc', video has 'xyz'" in msg
    assert "frame count" not in msg and "size" not in msg
    with pytest.raises(ProjectError, match=r"frame count: project has 10, video has 12"):
        AnnotationSession.load(tmp_path / "p", video=FakeVideo(12))
    with pytest.raises(ProjectError, match=r"size: project has \[8, 6\], video has \[8, 7\]"):
        AnnotationSession.load(tmp_path / "p", video=FakeVideo(10, size=(8, 7)))
    t = AnnotationSession.load(tmp_path / "p", video=FakeVideo(10, sha1="xyz"), allow_mismatch=True)
    assert t.keyframes() == [0, 5]
    with pytest.raises(ProjectError, match="00000.png: mask is 8x6 but the video frames are 8x7"):
        AnnotationSession.load(tmp_path / "p", video=FakeVideo(10, size=(8, 7)), allow_mismatch=True)


def test_corrupt_project_files(tmp_path):
    build().save(tmp_path / "p")
    pj = tmp_path / "p" / "project.json"
    good = pj.read_text()

    def expect(text, pattern, video=FakeVideo(10)):
        pj.write_text(text)
        with pytest.raises(ProjectError, match=pattern) as e:
            AnnotationSession.load(tmp_path / "p", video=video)
        assert e.value.path.endswith("project.json")

    expect(good[:200], "is not valid JSON")
    expect(json.dumps({"format": "something-else", "version": 1}), "not an Affinity Annotator file")
    expect(good.replace('"version": 1', '"version": 9'), "format version 9, newer than")
    expect(good.replace('"version": 1', '"version": "1"'), "no valid format version")
    expect(json.dumps({**json.loads(good), "objects": None}), "malformed project file")
    pj.unlink()
    with pytest.raises(ProjectError, match="does not exist"):
        AnnotationSession.load(tmp_path / "p", video=FakeVideo(10))
    pj.write_text(good)
    (tmp_path / "p" / "labels" / "00003.png").write_bytes(b"not a png")
    with pytest.raises(ProjectError, match="00003.png: not a readable image"):
        AnnotationSession.load(tmp_path / "p", video=FakeVideo(10))
    (tmp_path / "p" / "labels" / "00003.png").unlink()
    with pytest.raises(ProjectError, match="00003.png: mask file does not exist"):
        AnnotationSession.load(tmp_path / "p", video=FakeVideo(10))


def test_missing_video_is_named(tmp_path):
    build().save(tmp_path / "p")
    with pytest.raises(ProjectError, match="the video is not at .*clip.mp4"):
        AnnotationSession.load(tmp_path / "p")


def test_settings_must_be_json():
    s = AnnotationSession(FakeVideo(3))
    assert not s.dirty
    with pytest.raises(ConfigError, match="'device'"):
        s.update_settings(device=object())
    with pytest.raises(TypeError):
        s.settings["x"] = 1


def test_real_image_folder_video_and_moved_project(tmp_path):
    video_mod = pytest.importorskip("engine.video")
    from PIL import Image
    clip = tmp_path / "work" / "clip"
    clip.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(clip / f"{i:05d}.png")
    v = video_mod.VideoSource.open(clip)
    s = AnnotationSession(v)
    s.set_keyframe(0, mask(seed=3))
    s.save(tmp_path / "work" / "proj")
    shutil.move(tmp_path / "work", tmp_path / "moved")   # absolute path now wrong, relative right
    t = AnnotationSession.load(tmp_path / "moved" / "proj")
    assert os.path.samefile(t.video.path, tmp_path / "moved" / "clip")
    assert np.array_equal(t.label(0), s.label(0))
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "moved" / "clip" / "00000.png")
    with pytest.raises(ProjectError, match="first-frames hash"):
        AnnotationSession.load(tmp_path / "moved" / "proj")


def test_worker_thread_applying_while_user_edits():
    import threading
    s = AnnotationSession(FakeVideo(200))
    s.set_keyframe(0, mask(1))
    prop = FakePropagator()
    (seg,) = s.plan(0)
    worker = threading.Thread(target=lambda: list(s.propagate(prop, seg)))
    worker.start()
    for k in range(20, 200, 20):
        s.set_keyframe(k, mask(2))
    worker.join()
    st, keys = s.status_array(), s.keyframes()
    for i in np.flatnonzero(st == PROPAGATED):       # no valid result crosses a keyframe
        src = s.provenance(int(i)).source
        assert not any(min(src, i) < k < max(src, i) for k in keys)


def test_model_provenance_plans_outdated_frames_survives_save_and_undo(tmp_path):
    from engine.history import capture, diff, restore
    s = AnnotationSession(FakeVideo(10), objects={1: {"name": "cat"}})
    s.set_keyframe(0, mask(seed=1))
    s.set_keyframe(6, mask(seed=2))
    for seg in s.plan_all():
        list(s.propagate(FakePropagator(), seg, model="default.pt"))
    assert [s.provenance(i).model for i in range(10)] == [None] + ["default.pt"] * 5 + [None] + ["default.pt"] * 3
    assert s.plan_outdated("default.pt") == []
    # the model was adapted: every propagated frame is outdated, and plan_outdated covers exactly them
    segs = s.plan_outdated("adapted-1.pt")
    assert sorted(i for seg in segs for i in seg.frames) == [1, 2, 3, 3, 4, 5, 7, 8, 9]
    before = capture(s, "mask")
    for seg in segs[:1]:                       # re-run one segment with the adapted model
        list(s.propagate(FakePropagator(), seg, model="adapted-1.pt"))
    assert s.model_tags == ("default.pt", "adapted-1.pt")
    assert [s.provenance(i).model for i in (1, 2, 3, 4)] == ["adapted-1.pt"] * 3 + ["default.pt"]
    assert sorted(i for seg in s.plan_outdated("adapted-1.pt") for i in seg.frames) == [4, 5, 7, 8, 9]
    after = capture(s, "mask")
    restore(s, diff(before, after).before)     # undo brings the old tags back
    assert [s.provenance(i).model for i in (1, 2, 3)] == ["default.pt"] * 3
    restore(s, diff(before, after).after)
    s.set_keyframe(8, mask(seed=3))            # 9 goes stale and keeps its model
    assert s.provenance(9) == Provenance("stale", 6, "default.pt")
    s.save(tmp_path / "p")
    doc = json.loads((tmp_path / "p" / "project.json").read_text())
    assert {e["frame"]: e.get("model") for e in doc["provenance"]["mask"]}[1] == "adapted-1.pt"
    t = AnnotationSession.load(tmp_path / "p", video=FakeVideo(10))
    assert [t.provenance(i) for i in range(10)] == [s.provenance(i) for i in range(10)]
    np.testing.assert_array_equal(
        np.array([t.model_tags[m] if m >= 0 else "" for m in t.model_array()]),
        np.array([s.model_tags[m] if m >= 0 else "" for m in s.model_array()]))
