"""Propagator behaviour on constructed cases with known answers (a texture sliding one cell per frame)."""
import numpy as np
import pytest
import torch

from engine.errors import ConfigError, LabelError
from engine.labels import Keypoints
from engine.propagate import CancelToken, PropagationParams, Propagator

S = 8  # stride of the fake encoder
H, W = 12, 20  # feature grid


class Spec:
    name, stride = "fake", S


class Encoder(torch.nn.Module):
    spec = Spec()


class SlidingTexture:
    """Features of a texture that moves right by one cell per frame, wrapping around: cell (y, x)
    of frame t carries code[y, (x - t) mod W]; codes are random unit vectors, so every cell has
    exactly one true match (inside the radius, or through the keyframe's global search)."""

    batch_size = 4

    def __init__(self, frames=30, c=64):
        g = torch.Generator().manual_seed(0)
        self.code = torch.nn.functional.normalize(torch.randn(c, H, W, generator=g), dim=0)
        self.encoder = Encoder()

    def feature(self, t):
        return torch.roll(self.code, t, dims=2)

    def features_batch(self, key, items):
        return [self.feature(i) for i, _ in items]


class FakeVideo:
    path = "fake"

    def __init__(self, n):
        self.n = n
        self.size = (W * S, H * S)

    def __len__(self):
        return self.n

    def frame(self, i):
        return np.zeros((H * S, W * S, 3), np.uint8)

    def frames(self, start=0, stop=None):
        for i in range(start, self.n if stop is None else stop):
            yield i, self.frame(i)


def make(n=9, **kw):
    params = PropagationParams(max_side=None, precision="fp32", **kw)
    return Propagator(Encoder(), params, device="cpu", extractor=SlidingTexture(n)), FakeVideo(n)


def box_mask(x0):
    m = np.zeros((H * S, W * S), np.uint8)
    m[3 * S:8 * S, x0 * S:(x0 + 4) * S] = 1
    m[1 * S:3 * S, (x0 + 5) * S:(x0 + 7) * S] = 2
    return m


def shifted(mask, cells):
    """The mask moved right by whole cells (what the sliding texture does to the object)."""
    return np.roll(mask, cells * S, axis=1)


def test_mask_follows_the_motion_exactly():
    prop, video = make()
    results = list(prop.run(video, {0: box_mask(2)}, start=0))
    assert [r.index for r in results] == list(range(9))
    assert results[0].is_keyframe and not results[1].is_keyframe
    # frame 0's output is the keyframe seen through the feature grid (corners rounded by bilinear)
    assert 0 < (results[0].mask != box_mask(2)).sum() < 60
    for r in results:
        # the texture (and so the object) moves one cell (8 px) right per frame
        assert np.array_equal(r.mask, shifted(results[0].mask, r.index)), r.index
        assert r.soft.shape == (3, H, W) and r.soft.dtype == np.float32
        assert 0.99 <= r.confidence <= 1.0


def test_backward_and_stop_at_next_keyframe():
    prop, video = make()
    res = list(prop.run(video, {8: box_mask(10), 3: box_mask(5)}, start=8, direction="backward"))
    assert [r.index for r in res] == [8, 7, 6, 5, 4]  # stops before keyframe 3, never overwrites it
    assert all(np.array_equal(shifted(r.mask, 8 - r.index), res[0].mask) for r in res)
    fwd = list(prop.run(video, {0: box_mask(2), 5: box_mask(7)}, start=0))
    assert [r.index for r in fwd] == [0, 1, 2, 3, 4]
    assert [r.index for r in prop.run(video, {0: box_mask(2)}, start=0, stop=4)] == [0, 1, 2, 3]


def test_cancel_stops_promptly():
    prop, video = make()
    token = CancelToken()
    seen = []
    for r in prop.run(video, {0: box_mask(2)}, start=0, cancel=token):
        seen.append(r.index)
        if r.index == 3:
            token.set()
    assert seen == [0, 1, 2, 3]


def test_keypoints_track_and_absent_points_stay_absent():
    prop, video = make()
    xy = np.array([[4 * S, 5 * S], [9 * S, 2 * S], [0, 0]], np.float32)
    kp = Keypoints(xy, [True, True, False])
    for r in prop.run(video, {0: kp}, start=0):
        got = r.keypoints
        assert got.visible.tolist() == [True, True, False]
        assert np.isnan(got.xy[2]).all()
        expected = xy[:2] + [r.index * W * S / W, 0]
        assert np.abs(got.xy[:2] - expected).max() < 1.0, (r.index, got.xy)


def test_reduced_precision_search_gives_the_same_answer_here():
    prop, video = make(topk=5)
    prop.precision = "bf16"
    res = list(prop.run(video, {0: box_mask(2)}, start=0, stop=6))
    for r in res:
        assert np.array_equal(r.mask, shifted(res[0].mask, r.index))


def test_bad_labels_and_params_are_refused():
    prop, video = make()
    with pytest.raises(LabelError, match="but the video frames are 160x96"):
        next(prop.run(video, {0: np.zeros((10, 10), np.uint8)}, start=0))
    with pytest.raises(LabelError, match="empty"):
        next(prop.run(video, {0: np.zeros((H * S, W * S), np.uint8)}, start=0))
    with pytest.raises(LabelError, match="outside"):
        next(prop.run(video, {0: Keypoints([[500, 5]], [True])}, start=0))
    with pytest.raises(LabelError, match="not a keyframe"):
        next(prop.run(video, {0: box_mask(2)}, start=1))
    with pytest.raises(ConfigError):
        PropagationParams(topk=0).validate()
    with pytest.raises(ConfigError):
        next(prop.run(video, {0: box_mask(2)}, start=0, direction="sideways"))


def test_radius_keeps_its_reach_in_the_image_at_preview_scales():
    """The radius is defined at scale 1: a preview at scale s searches radius x s cells (at least 1),
    so the window covers the same part of the image; the other protocol values are untouched."""
    from engine.models import random_encoder
    enc = random_encoder("crw-r18-s8")
    for scale, radius, want in ((1.0, None, 12.0), (0.5, None, 6.0), (0.25, 20.0, 5.0), (0.05, None, 1.0)):
        p = Propagator(enc, PropagationParams(scale=scale, radius=radius), device="cpu")
        assert p.protocol.radius == want and p.params.radius == want, (scale, radius)
        assert p.protocol.topk == 10 and p.protocol.context == 20
