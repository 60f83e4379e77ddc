"""The DIS optical-flow baseline follows known motion, and ArraySource serves in-memory clips."""
import cv2
import numpy as np
import pytest

from engine.errors import LabelError, VideoError
from engine.flow_baseline import FlowParams, FlowPropagator
from engine.labels import Keypoints
from engine.propagate import CancelToken
from engine.video import ArraySource

H, W, DX, DY, N = 96, 128, 3, 2, 6


def shifted_clip():
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.random((H + 40, W + 40, 3)).astype(np.float32), (0, 0), 2.5)
    big = ((big - big.min()) / (big.max() - big.min()) * 255).astype(np.uint8)
    # Content moves by (+DX, +DY) per frame: frame t shows the texture offset by -t*(DX, DY).
    return [np.ascontiguousarray(big[20 - t * DY:20 - t * DY + H, 20 - t * DX:20 - t * DX + W]) for t in range(N)]


def box(x0, y0):
    m = np.zeros((H, W), np.uint8)
    m[y0:y0 + 30, x0:x0 + 40] = 1
    return m


def test_array_source_checks_frames():
    frames = shifted_clip()
    v = ArraySource(frames, fps=10)
    assert len(v) == N and v.size == (W, H) and np.array_equal(v.frame(3), frames[3])
    assert [i for i, _ in v.frames(2, 4)] == [2, 3] and v.fingerprint()["frames"] == N
    with pytest.raises(VideoError, match="uint8"):
        ArraySource([frames[0], frames[1][:10]])
    with pytest.raises(VideoError, match="no frames"):
        ArraySource([])


def test_mask_follows_the_motion():
    video = ArraySource(shifted_clip())
    results = list(FlowPropagator().run(video, {0: box(30, 20)}, start=0))
    assert [r.index for r in results] == list(range(N)) and results[0].is_keyframe
    for r in results[1:]:
        want = box(30 + r.index * DX, 20 + r.index * DY)
        iou = ((r.mask > 0) & (want > 0)).sum() / ((r.mask > 0) | (want > 0)).sum()
        assert iou > 0.9, (r.index, iou)
        assert r.soft.shape == (2, H // 4, W // 4) and 0 <= r.confidence <= 1


def test_keypoints_follow_the_motion_and_leave_the_frame():
    video = ArraySource(shifted_clip())
    seed = Keypoints(np.array([[60.0, 40.0], [W - 2.0, 50.0], [5.0, 5.0]]), np.array([True, True, False]))
    last = list(FlowPropagator().run(video, {0: seed}, start=0))[-1].keypoints
    assert np.allclose(last.xy[0], [60 + (N - 1) * DX, 40 + (N - 1) * DY], atol=1.0)
    assert not last.visible[1]      # moved out of the right edge
    assert not last.visible[2]      # absent stays absent


def test_backward_stop_cancel_and_bad_mask():
    video = ArraySource(shifted_clip())
    back = list(FlowPropagator().run(video, {N - 1: box(40, 30)}, start=N - 1, direction="backward", stop=2))
    assert [r.index for r in back] == [N - 1, N - 2, N - 3, N - 4, 3][:len(back)] and back[-1].index == 3
    token = CancelToken()
    gen = FlowPropagator(FlowParams(scale=0.5)).run(video, {0: box(30, 20)}, start=0, cancel=token)
    next(gen), next(gen)
    token.set()
    assert list(gen) == []
    with pytest.raises(LabelError, match="frames are"):
        next(FlowPropagator().run(video, {0: np.zeros((10, 10), np.uint8)}, start=0))
