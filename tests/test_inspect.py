"""engine.inspect on constructed features with known answers, and on real conv features of a
shifted texture."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from engine import inspect as ins
from engine.errors import ConfigError
from engine.features import FeatureExtractor
from engine.models.specs import get_spec, random_encoder


def onehot_features(h=6, w=8):
    """Each cell its own orthogonal feature: cell j of A matches exactly cell j of B."""
    return torch.eye(h * w).reshape(h * w, h, w)


def test_exact_match_gets_the_max_weight():
    fa = onehot_features()
    fb = torch.roll(fa, shifts=(1, 2), dims=(1, 2))      # content moves down 1, right 2
    heat, scores, window = ins.heatmap_from_features(fa, fb, (2, 3), ins.InspectParams(temperature=0.1))
    assert np.unravel_index(np.argmax(heat), heat.shape) == (3, 5)
    assert heat.sum() == pytest.approx(1.0, abs=1e-5) and window.all()
    # One score of 1, the rest 0: weight e^(1/T) / (e^(1/T) + (N-1)) exactly.
    e = np.exp(1 / 0.1)
    assert heat[3, 5] == pytest.approx(e / (e + 47), rel=1e-5)
    assert scores[3, 5] == pytest.approx(1.0) and np.nanmax(np.abs(np.delete(scores.ravel(), 3 * 8 + 5))) == 0


def test_radius_restricts_to_the_window():
    fa = onehot_features()
    fb = torch.roll(fa, shifts=(0, 3), dims=(1, 2))      # the match lies 3 cells away
    p = ins.InspectParams(temperature=0.1, radius=2)
    heat, scores, window = ins.heatmap_from_features(fa, fb, (2, 3), p)
    yy, xx = np.mgrid[:6, :8]
    expected = (yy - 2) ** 2 + (xx - 3) ** 2 < 4          # Euclidean, strict <, as the propagator
    np.testing.assert_array_equal(window, expected)
    assert heat[~expected].max() == 0 and heat[expected].sum() == pytest.approx(1.0, abs=1e-5)
    assert np.isnan(scores[~expected]).all()
    assert heat[2, 6] == 0                                # the true match is outside: not found
    # uniform inside (all scores 0) since the match is out of reach
    assert np.ptp(heat[expected]) == pytest.approx(0, abs=1e-7)
    heat_g, _, _ = ins.heatmap_from_features(fa, fb, (2, 3), ins.InspectParams(temperature=0.1, radius=0))
    assert np.unravel_index(np.argmax(heat_g), heat_g.shape) == (2, 6)   # radius 0 = global


def test_lower_temperature_sharpens_monotonically():
    g = torch.Generator().manual_seed(0)
    fa, fb = torch.randn(16, 5, 7, generator=g), torch.randn(16, 5, 7, generator=g)
    peaks, argmaxes = [], set()
    for t in (1.0, 0.3, 0.1, 0.03, 0.01):
        heat, _, _ = ins.heatmap_from_features(fa, fb, (1, 1), ins.InspectParams(temperature=t))
        peaks.append(heat.max())
        argmaxes.add(int(heat.argmax()))
    assert all(b > a for a, b in zip(peaks, peaks[1:])) and peaks[-1] > 0.5
    assert len(argmaxes) == 1       # temperature never changes which cell is best


class ArrayVideo:
    def __init__(self, frames, path="mem://test"):
        self._f, self.path = frames, path
        self.size = (frames[0].shape[1], frames[0].shape[0])
        self.fps = 10.0

    def __len__(self):
        return len(self._f)

    def frame(self, i):
        return self._f[i]


def texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2)
    t = (t - t.min()) / (t.max() - t.min())
    return (t * 255).astype(np.uint8)


SHIFT = (16, 8)   # (dx, dy) in pixels: whole stride-8 cells


def shifted_pair(w=192, h=128):
    """Frame B shows frame A's content moved by -SHIFT: A's pixel (x, y) is at (x - dx, y - dy) in B."""
    big = texture(h + 40, w + 40)
    dx, dy = SHIFT
    return ArrayVideo([big[8:8 + h, 8:8 + w].copy(), big[8 + dy:8 + dy + h, 8 + dx:8 + dx + w].copy()])


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(random_encoder(get_spec("crw-r18-s8")), device="cpu", precision="fp32", batch_size=1)


def test_random_conv_features_find_the_shift(extractor):
    video = shifted_pair()
    inspector = ins.Inspector(extractor, ins.InspectParams(topk=5))
    first = inspector.inspect(video, 0, 1, 100, 60)
    assert not first.cached and first.cell == (60 // 8, 100 // 8)
    for x, y in [(100, 60), (60, 90), (150, 100), (120, 40)]:
        r = inspector.inspect(video, 0, 1, x, y)
        assert r.cached                                   # features computed once per frame
        best = r.matches[0]
        assert abs(best.x - (x - SHIFT[0])) <= 8 and abs(best.y - (y - SHIFT[1])) <= 8
        assert best.rank == 1 and best.weight == max(m.weight for m in r.matches)
        assert sum(m.weight for m in r.matches) == pytest.approx(1.0)
        assert [m.prob for m in r.matches] == sorted((m.prob for m in r.matches), reverse=True)
        assert r.heat_full.shape == (128, 192)
        # the upsampled heat peaks near the best match
        py, px = np.unravel_index(np.argmax(r.heat_full), r.heat_full.shape)
        assert abs(px - best.x) <= 8 and abs(py - best.y) <= 8


def test_processing_scale_maps_cells_to_frame_pixels(extractor):
    video = shifted_pair(w=256, h=128)
    r = ins.Inspector(extractor).inspect(video, 0, 1, 200, 100, ins.InspectParams(scale=0.5))
    # 128x64 processing, stride 8 -> one cell = 16 frame pixels
    assert r.stride_px == (16.0, 16.0) and r.cell == (100 // 16, 200 // 16) and r.heat.shape == (8, 16)
    assert r.cell_box == (192.0, 96.0, 208.0, 112.0)


def test_bad_input(extractor):
    video = shifted_pair()
    i = ins.Inspector(extractor)
    with pytest.raises(ConfigError, match="outside the video"):
        i.inspect(video, 0, 2, 10, 10)
    with pytest.raises(ConfigError, match="outside the 192x128 frame"):
        i.inspect(video, 0, 1, 192, 10)
    with pytest.raises(ConfigError, match="temperature"):
        ins.InspectParams(temperature=0).validate()
    with pytest.raises(ConfigError, match="source"):
        ins.Inspector(object())


def test_render_and_png_round_trip(tmp_path):
    frame = np.full((60, 80, 3), 200, np.uint8)
    heat = np.zeros((60, 80), np.float32)
    heat[10:40, 30:70] = 1.0
    m = ins.Match(1, 45.0, 25.0, (3, 5), 0.9, 1.0, 1.0)
    out = ins.render_heatmap(frame, heat, [m], numbers=False)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert tuple(out[5, 5]) == (150, 150, 150)            # cold: the frame, dimmed, no colour
    hot = out[12, 32].astype(int)          # far from the marker
    # peak heat: 0.65 x inferno's hot end (252, 255, 164) over the dimmed frame (150)
    np.testing.assert_allclose(hot, 0.35 * 150 + 0.65 * np.array([252, 255, 164]), atol=1)
    assert out[25, 45 + 5].tolist() != out[25, 45].tolist()   # the ring is drawn around the match
    ins.save_png(tmp_path / "h.png", out)
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "h.png")), out)
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]
