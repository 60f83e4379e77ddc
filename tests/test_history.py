"""engine.history (undo captures) and AnnotationSession.plan_stale."""
import numpy as np

from engine.history import capture, diff, restore
from engine.labels import Keypoints, KeypointSchema
from engine.session import AnnotationSession
from tests.test_session import FakePropagator, FakeVideo, H, W, kinds, mask


def propagated_session(n=10):
    s = AnnotationSession(FakeVideo(n))
    s.set_keyframe(0, mask(1))
    for seg in s.plan(0, "forward"):
        list(s.propagate(FakePropagator(), seg))
    return s


def test_undo_redo_of_a_correction_restores_labels_provenance_and_keyframes():
    s = propagated_session()
    before = capture(s, "mask")
    old4 = s.label(4)
    s.set_keyframe(4, mask(2))
    change = diff(before, capture(s, "mask"))
    assert set(change.frames) == {4, 5, 6, 7, 8, 9}           # the keyframe + the frames gone stale
    # stale frames keep their labels: the capture holds references, not copies
    assert all(change.before.labels[i] is change.after.labels[i] for i in range(5, 10))
    restore(s, change.before)
    assert s.keyframes() == [0]
    assert kinds(s, range(10)) == ["user"] + ["propagated"] * 9
    assert s.label(4) is not None and np.array_equal(s.label(4), old4)
    restore(s, change.after)
    assert s.keyframes() == [0, 4]
    assert kinds(s, [4, 5, 9]) == ["user", "stale", "stale"]
    assert int(s.label(4)[0, 0]) == 2


def test_restore_makes_in_flight_runs_outdated_and_notifies():
    s = propagated_session()
    seg = s.plan(0, "forward")[0]
    before = capture(s, "mask")
    s.set_keyframe(0, mask(3))
    change = diff(before, capture(s, "mask"))
    seen = []
    s.subscribe(lambda kind, frames: seen.append((kind, list(frames))))
    restore(s, change.before)
    assert [f for k, f in seen if k == "label"] == [[0]]
    assert s.dirty
    # a run planned before the restore is dropped
    list(s.propagate(FakePropagator(), seg))
    assert s.provenance(3).kind == "propagated"            # restored value, not overwritten by the old run
    assert s.plan(0, "forward")[0].version != seg.version


def test_object_delete_is_undoable():
    s = propagated_session(4)
    oid = s.add_object("cat")
    m = mask(1)
    m[0, :] = oid
    before = capture(s, "mask")
    s.set_keyframe(2, m)
    s.delete_object(oid)
    change = diff(before, capture(s, "mask"))
    restore(s, change.before)
    assert oid in s.objects and s.objects[oid]["name"] == "cat"
    assert s.keyframes() == [0]
    restore(s, change.after)
    assert oid not in s.objects and s.keyframes() == [0, 2] and not (s.label(2) == oid).any()


def test_keypoint_layer_capture():
    schema = KeypointSchema(["a", "b"])
    s = AnnotationSession(FakeVideo(5), schema)
    before = capture(s, "keypoints")
    s.set_keyframe(1, Keypoints([[1, 1], [2, 2]], [True, False]))
    change = diff(before, capture(s, "keypoints"))
    assert change.frames == [1]
    restore(s, change.before)
    assert s.keyframes("keypoints") == [] and s.keypoints(1) is None
    restore(s, change.after)
    assert s.keypoints(1).visible.tolist() == [True, False]


def test_plan_stale_runs_only_over_stale_frames():
    s = AnnotationSession(FakeVideo(20))
    s.set_keyframe(0, mask(1))
    s.set_keyframe(10, mask(1))
    for seg in s.plan_all():
        list(s.propagate(FakePropagator(), seg))
    assert s.plan_stale() == []
    s.set_keyframe(2, mask(2))                 # frames 3, 4 (owned by 0; 5 is 10's) go stale
    segs = s.plan_stale()
    assert [(g.keyframe, g.direction, list(g.frames)) for g in segs] == [(2, "forward", [3, 4])]
    for seg in segs:
        list(s.propagate(FakePropagator(), seg))
    assert "stale" not in kinds(s, range(20))
    assert int(s.label(4)[0, 0]) == 2 and int(s.label(5)[0, 0]) == 1


def test_plan_stale_backward():
    s = AnnotationSession(FakeVideo(12))
    s.set_keyframe(11, mask(1))
    for seg in s.plan_all():
        list(s.propagate(FakePropagator(), seg))
    s.set_keyframe(6, mask(2))
    segs = s.plan_stale()
    assert [(g.keyframe, g.direction, list(g.frames)) for g in segs] == [(6, "backward", [5, 4, 3, 2, 1, 0])]
    assert H and W
