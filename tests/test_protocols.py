"""Inference protocols of the other methods (research spec §4.3, §6.9, §7.6, §8.3-8.4, §9.6) as
options of the one Propagator, on constructed features with known answers."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import affinity, protocols
from engine.errors import ConfigError
from engine.propagate import PropagationParams, Propagator
from tests.test_propagate import H, S, W, Encoder, FakeVideo, SlidingTexture, box_mask

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo"


def steps(name, t, **over):
    return protocols.reference_steps(protocols.replace(protocols.get(name), **over), t)


# -- reference-set policies ----------------------------------------------------------------------

def test_reference_sets_are_the_specs():
    # MAST/LIIR §4.3 examples: n = 1: {0}; 3: {0, 2}; 7: {0, 2, 4, 5, 6}; 30: {0, 5, 25, 27, 29}
    for name in ("mast", "liir"):
        assert [steps(name, t) for t in (1, 2, 3, 6, 7, 30)] == [
            [0], [0, 1], [0, 2], [0, 1, 3, 5], [0, 2, 4, 5, 6], [0, 5, 25, 27, 29]]
    # CRW §3.3.4 (m = 3): keyframe + m padded short-term frames; frame 0 occurs m - t + 2 times
    assert [steps("crw", t, context=3) for t in (1, 2, 3, 4, 9)] == [
        [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3], [0, 6, 7, 8]]
    # STT §9.6 (m = 20): first + preceding 20, frame 0 twice while t <= 20
    assert steps("stt", 1) == [0, 0] and steps("stt", 20) == [0] + list(range(20))
    assert steps("stt", 21) == [0] + list(range(1, 21)) and steps("stt", 30) == [0] + list(range(10, 30))
    # UVC/ContrastCorr §6.9: frame 0 + the 7 most recent predictions (queue starts empty)
    for name in ("uvc", "contrastcorr"):
        assert [steps(name, t) for t in (1, 2, 8, 9, 30)] == [
            [0], [0, 1], list(range(8)), [0] + list(range(2, 9)), [0] + list(range(23, 30))]
    # what the memory keeps is exactly what later targets will read
    for name in protocols.NAMES:
        pr = protocols.get(name)
        for t in range(1, 40):
            later = set().union(*(protocols.reference_steps(pr, u) for u in range(t + 1, t + 30)))
            assert protocols.retained_steps(pr, t) == {s for s in later if s <= t}, (name, t)
    with pytest.raises(ConfigError):
        protocols.reference_steps(protocols.get("crw"), 0)


class Scaled(SlidingTexture):
    """The sliding texture with features scaled up: raw-dot-product protocols (tau = 1) need the
    large score range that unnormalised features give."""

    def __init__(self, n, gain=30.0):
        super().__init__(n)
        self.gain = gain

    def feature(self, t):
        return self.gain * torch.roll(self.code, t, dims=2)


def make(n, gain=30.0, **kw):
    params = PropagationParams(max_side=None, precision="fp32", **kw)
    return Propagator(Encoder(), params, device="cpu", extractor=Scaled(n, gain)), FakeVideo(n)


def frame_of(rows, extractor, n):
    """Which frame a reference's feature rows belong to (each frame's features are distinct)."""
    hits = [t for t in range(n) if torch.equal(rows, extractor.feature(t).reshape(rows.shape[1], -1).t())]
    assert len(hits) == 1
    return hits[0]


@pytest.mark.parametrize("name", ["crw", "mast", "stt", "uvc"])
@pytest.mark.parametrize("start,direction", [(0, "forward"), (13, "backward"), (4, "forward")])
def test_propagator_reads_exactly_the_policy_frames(name, start, direction, monkeypatch):
    n = 14
    prop, video = make(n, protocol=name, context=3 if name != "mast" else None, short_side=0)
    seen = []
    step = prop._step

    def spy(feat, feat_rows, refs, *a):
        seen.append([frame_of(r.rows, prop.extractor, n) for r in refs])
        return step(feat, feat_rows, refs, *a)

    monkeypatch.setattr(prop, "_step", spy)
    out = [r.index for r in prop.run(video, {start: box_mask(2)}, start=start, direction=direction)]
    sign = 1 if direction == "forward" else -1
    assert out == [start + sign * s for s in range(len(out))]
    want = [[start + sign * s for s in protocols.reference_steps(prop.protocol, t)] for t in range(1, len(out))]
    assert seen == want


# -- windows ---------------------------------------------------------------------------------------

def admitted(geo):
    """{query cell: set of key cells (N = outside the grid)} from the geometry's bias."""
    out = {}
    for t in range(geo.query_index.shape[0]):
        for a, q in enumerate(geo.query_index[t].tolist()):
            if q < geo.n:
                ok = torch.isfinite(geo.bias[t, a])
                out[q] = sorted(geo.key_index[t][ok].tolist())
    return out


@pytest.mark.parametrize("shape", ["square", "circle"])
@pytest.mark.parametrize("h,w,radius,tile", [(7, 9, 2, 3), (6, 11, 2.5, 4), (5, 5, 3, 2)])
def test_window_admits_exactly_the_right_offsets(shape, h, w, radius, tile):
    geo = affinity.WindowGeometry.build(h, w, radius, tile, "cpu", shape=shape)
    zero = affinity.WindowGeometry.build(h, w, radius, tile, "cpu", shape=shape, border="zero")
    got, got_zero = admitted(geo), admitted(zero)
    for y in range(h):
        for x in range(w):
            inside = [(dy, dx) for dy in range(-h, h + 1) for dx in range(-w, w + 1)
                      if (max(abs(dy), abs(dx)) <= radius if shape == "square" else dy * dy + dx * dx < radius ** 2)]
            cells = sorted((y + dy) * w + x + dx for dy, dx in inside if 0 <= y + dy < h and 0 <= x + dx < w)
            assert got[y * w + x] == cells
            # zero border (MAST): the same cells plus one zero-scored padding cell per outside offset
            assert got_zero[y * w + x] == cells + [h * w] * (len(inside) - len(cells))


def test_square_window_topk_matches_dense():
    g = torch.Generator().manual_seed(0)
    h, w, r = 9, 10, 2
    n = h * w
    q = torch.nn.functional.normalize(torch.randn(8, n, generator=g), dim=0)
    keys = [torch.nn.functional.normalize(torch.randn(8, n, generator=g), dim=0) for _ in range(2)]
    geo = affinity.WindowGeometry.build(h, w, r, 4, "cpu", shape="square")
    v, f, c = affinity.window_topk_multi(q, [affinity.KeyRegions(k, geo, torch.float32) for k in keys], geo, 6)
    ys, xs = torch.arange(n) // w, torch.arange(n) % w
    far = torch.maximum((ys[:, None] - ys[None]).abs(), (xs[:, None] - xs[None]).abs()) > r
    dense = torch.cat([(q.t() @ k).masked_fill(far, float("-inf")) for k in keys], 1)
    vd, idd = dense.topk(6, dim=1)
    assert torch.allclose(v, vd, atol=1e-6) and torch.equal(f * n + c, idd)


# -- MAST / LIIR: one softmax over all windows, hard memory, compactness prior ---------------------

def dense_window_softmax(q, keys, labels, h, w, r, tau=1.0, compact=None):
    """Brute force: per query, scores over every (2r+1)^2 square-window offset of every reference
    (outside the grid: score 0, label 0), one softmax, LIIR's prior per reference, label mix."""
    n = h * w
    out = torch.zeros(n, labels[0].shape[1], dtype=torch.float64)
    offs = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    for cell in range(n):
        y, x = divmod(cell, w)
        sc, lab = [], []
        for k, lb in zip(keys, labels):
            for dy, dx in offs:
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w:
                    sc.append(float(q[:, cell] @ k[:, yy * w + xx]) / tau)
                    lab.append(lb[yy * w + xx].double())
                else:
                    sc.append(0.0)
                    lab.append(torch.zeros(lb.shape[1], dtype=torch.float64))
        a = torch.softmax(torch.tensor(sc, dtype=torch.float64), 0).view(len(keys), len(offs))
        if compact:
            sigma, thr = compact
            for u in range(len(keys)):
                v, i = a[u].topk(2)
                if v[0] > thr:
                    om = torch.softmax(v, 0)
                    mu = [offs[int(j)] for j in i]
                    a[u] = torch.tensor([sum(float(om[m]) * math.exp(-4 * math.log(2) * ((dy - mu[m][0]) ** 2 + (dx - mu[m][1]) ** 2) / sigma ** 2)
                                             for m in range(2)) for dy, dx in offs], dtype=torch.float64)
        out[cell] = a.flatten() @ torch.stack(lab)
    return out


@pytest.mark.parametrize("cache_bytes", [None, 0])
@pytest.mark.parametrize("compact", [None, (1.0, 0.1), (1.5, 0.02)])
def test_window_softmax_and_compactness_prior_match_the_dense_formula(compact, cache_bytes):
    g = torch.Generator().manual_seed(2)
    h, w, r = 6, 7, 2
    n = h * w
    q = 3 * torch.randn(8, n, generator=g)
    keys = [3 * torch.randn(8, n, generator=g) for _ in range(2)]
    labels = [torch.softmax(torch.randn(n, 3, generator=g), 1) for _ in range(2)]
    geo = affinity.WindowGeometry.build(h, w, r, 3, "cpu", shape="square", border="zero")
    got = affinity.window_softmax_multi(q, [affinity.KeyRegions(k, geo, torch.float32, cache_bytes) for k in keys],
                                        [affinity.row_regions(lb, geo) for lb in labels], geo, 1.0, compact)
    want = dense_window_softmax(q, keys, labels, h, w, r, compact=compact)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_compactness_prior_on_a_two_peak_map():
    yy, xx = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], -1)                      # 49 positions
    probs = torch.full((49,), 0.2 / 47)
    probs[1 * 7 + 1], probs[4 * 7 + 5] = 0.5, 0.3                            # peaks at (1,1) and (4,5)
    out = affinity.compactness_prior(probs, pos, sigma=1.0, threshold=0.1)
    w1, w2 = math.exp(0.5) / (math.exp(0.5) + math.exp(0.3)), math.exp(0.3) / (math.exp(0.5) + math.exp(0.3))
    g = lambda d2: math.exp(-4 * math.log(2) * d2)  # noqa: E731  (FWHM sigma = 1)
    assert out[1 * 7 + 1] == pytest.approx(w1 + w2 * g(3 ** 2 + 4 ** 2), rel=1e-5)
    assert out[4 * 7 + 5] == pytest.approx(w2 + w1 * g(25), rel=1e-5)
    assert out[1 * 7 + 2] == pytest.approx(w1 * 0.0625 + w2 * g(9 + 9), rel=1e-5)   # one cell away: 2^-4
    assert out.argmax() == 1 * 7 + 1 and (out[[8, 33]].sum() / out.sum()) > 0.5
    # a row whose top weight is below the threshold is kept as it is
    flat = torch.full((49,), 1 / 49)
    assert torch.equal(affinity.compactness_prior(flat, pos, 1.0, 0.1), flat)


def test_hard_memory_stores_one_hot_labels_and_soft_memory_does_not(monkeypatch):
    for name, hard in (("mast", True), ("liir", True), ("stt", False)):
        prop, video = make(10, gain=3.0, protocol=name, short_side=0)
        stored = []
        entry = prop._entry

        def spy(feat, rows, labels, geo, step, entry=entry, stored=stored):
            stored.append((step, labels.clone()))
            return entry(feat, rows, labels, geo, step)

        monkeypatch.setattr(prop, "_entry", spy)
        res = list(prop.run(video, {0: box_mask(2)}, start=0))
        assert len(res) == 10 and len(stored) >= 5
        for step, lab in stored:
            one_hot = bool(((lab == 0) | (lab == 1)).all() and torch.equal(lab.sum(1), torch.ones(len(lab))))
            assert one_hot == (hard or step == 0), (name, step)   # the keyframe is one-hot (nearest) for all
            if hard and step:
                # the one-hot of the frame's decoded mask, sampled at each cell's top-left pixel
                mask = res[step].mask[::S, ::S]
                ids = torch.from_numpy(np.searchsorted([0, 1, 2], mask)).flatten()
                assert torch.equal(lab.argmax(1), ids)


def test_mast_follows_a_slide_inside_its_window():
    prop, video = make(9, protocol="mast")
    assert prop.protocol.topk == 0 and prop.protocol.window == "square"
    res = list(prop.run(video, {0: box_mask(2)}, start=0))
    key = res[0].soft.argmax(0)
    # frame 1 reads only the keyframe: the one-cell slide is copied exactly (column 0's match
    # wrapped round to column 19, outside the window, so it is left out)
    assert np.array_equal(res[1].soft.argmax(0)[:, 1:], np.roll(key, 1, axis=1)[:, 1:])
    # later frames mix the keyframe with hard memories of decoded masks; those lose an object's
    # top-left corner cell (bilinear-up + argmax + top-left re-sampling, as MAST's own pipeline)
    for r in res[2:5]:
        got, want = r.soft.argmax(0)[:, r.index:] > 0, np.roll(key, r.index, axis=1)[:, r.index:] > 0
        assert (got & want).sum() / (got | want).sum() > 0.6, r.index


def bilinear(img, y, x):
    """img [C, h, w] at continuous (y, x), zero outside (align_corners=True), by hand."""
    c, h, w = img.shape
    y0, x0 = math.floor(y), math.floor(x)
    out = torch.zeros(c, dtype=torch.float64)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[:, yy, xx].double()
    return out


def test_mast_long_term_roi_matches_the_formula_and_joins_one_softmax():
    g = torch.Generator().manual_seed(6)
    h, w, r, d, c = 6, 7, 1, 2, 5
    n = h * w
    q = 2 * torch.randn(c, n, generator=g)
    far_key, near_key = 2 * torch.randn(c, n, generator=g), 2 * torch.randn(c, n, generator=g)
    far_lab, near_lab = (torch.softmax(torch.randn(n, 3, generator=g), 1) for _ in range(2))
    kimg, limg = far_key.view(c, h, w), far_lab.t().reshape(3, h, w)
    offs = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    want = torch.zeros(n, 3, dtype=torch.float64)
    for cell in range(n):
        y, x = divmod(cell, w)
        qc = q[:, cell].double()
        coarse = torch.tensor([float(qc @ bilinear(kimg, y + d * dy, x + d * dx)) for dy, dx in offs], dtype=torch.float64)
        a = torch.softmax(coarse, 0)
        oy = d * sum(float(a[i]) * dy for i, (dy, dx) in enumerate(offs))
        ox = d * sum(float(a[i]) * dx for i, (dy, dx) in enumerate(offs))
        sc, lab = [], []
        for dy, dx in offs:                                   # the ROI reference, re-sampled around q + o
            sc.append(float(qc @ bilinear(kimg, y + oy + dy, x + ox + dx)))
            lab.append(bilinear(limg, y + oy + dy, x + ox + dx))
        for dy, dx in offs:                                   # a short-term reference, plain window
            inside = 0 <= y + dy < h and 0 <= x + dx < w
            sc.append(float(qc @ near_key[:, (y + dy) * w + x + dx].double()) if inside else 0.0)
            lab.append(near_lab[(y + dy) * w + x + dx].double() if inside else torch.zeros(3, dtype=torch.float64))
        want[cell] = torch.softmax(torch.tensor(sc, dtype=torch.float64), 0) @ torch.stack(lab)
    geo = affinity.WindowGeometry.build(h, w, r, 3, "cpu", shape="square", border="zero")
    part = affinity.roi_window_partial(q, far_key, far_lab, (h, w), r, d, chunk=5)
    got = affinity.window_softmax_multi(q, [affinity.KeyRegions(near_key, geo, torch.float32)],
                                        [affinity.row_regions(near_lab, geo)], geo, extra=[part])
    assert torch.allclose(got.double(), want, atol=1e-5)
    only = affinity.window_softmax_multi(q, [], [], geo, extra=[part])
    assert torch.isfinite(only).all() and only.shape == (n, 3)      # the ROI reference alone


def test_mast_reads_long_term_references_through_the_roi(monkeypatch):
    prop, video = make(24, gain=3.0, protocol="mast")
    calls = []
    roi = affinity.roi_window_partial

    def spy(query, key, labels, grid, radius, dilation, *a, **k):
        # the texture repeats after W = 20 frames; long-term references are frames 0 and 5
        calls.append((frame_of(key.t().contiguous(), prop.extractor, W), dilation, radius))
        return roi(query, key, labels, grid, radius, dilation, *a, **k)

    monkeypatch.setattr(affinity, "roi_window_partial", spy)
    res = list(prop.run(video, {0: box_mask(2)}, start=0))
    assert len(res) == 24
    # gap > 15: frame 0 from target 16 on (dilation 2), frame 5 from target 21 on (dilation 2)
    want = [(0, 2, 12)] * (21 - 16) + [x for t in range(21, 24) for x in ((0, 2, 12), (5, 2, 12))]
    assert calls == want
    assert protocols.roi_dilation(30, 15) == 3 and protocols.roi_dilation(90, 15) == 4
    assert Propagator(Encoder(), PropagationParams(protocol="mast", topk=4), device="cpu",
                      extractor=Scaled(3)).protocol.roi_gap == 0     # an override leaving MAST's scheme


# -- UVC / ContrastCorr: per-reference global softmax, top-k unrenormalised, averaged ---------------

def test_mutual_correlation_and_per_reference_topk_equal_the_formula():
    g = torch.Generator().manual_seed(4)
    c, nq, nk, k = 6, 23, 19, 5
    q = torch.randn(c, nq, generator=g).relu() * 2
    key = torch.randn(c, nk, generator=g).relu() * 2
    s = (q.t() @ key).double()                                           # [targets, refs]
    m_ref, m_tar = s.max(0).values, s.max(1).values
    eps = 1e-5
    st = torch.empty_like(s)
    for j in range(nq):
        for i in range(nk):
            st[j, i] = s[j, i] * (s[j, i] / (m_ref[i] + eps)) * (s[j, i] / (m_tar[j] + eps))
    for mutual, scores in ((True, st), (False, s)):
        a = torch.softmax(scores / 0.5, 1)
        wv, wc = a.topk(k, 1)
        w, cells = affinity.global_topk_softmax(q, key, k, temperature=0.5, mutual=mutual, chunk=7)
        assert torch.equal(cells, wc) and torch.allclose(w.double(), wv, atol=1e-6)
        assert (w.sum(1) <= 1 + 1e-5).all() and (w.sum(1) < 0.99).any()     # not renormalised
    # the weights are the max-normalised ratios: the mutual best match keeps its raw score
    j = 0
    i = int(s[j].argmax())
    if int(s[:, i].argmax()) == j:
        assert float(st[j, i]) == pytest.approx(float(s[j, i]) * (s[j, i] / (s[j, i] + eps)) ** 2)


def test_per_reference_step_averages_unrenormalised_predictions():
    prop, video = make(4, protocol="contrastcorr", short_side=0)
    g = torch.Generator().manual_seed(5)
    n, c = H * W, 8
    feat = torch.randn(c, n, generator=g).relu()
    refs = []
    for _ in range(3):
        from engine.propagate import _Ref
        r = _Ref(None, torch.softmax(torch.randn(n, 2, generator=g), 1))
        r.search = torch.randn(c, n, generator=g).relu()
        refs.append(r)
    got = prop._step(feat, feat.t(), refs, None, (H, W), 2)
    want = 0
    for r in refs:
        w, cell = affinity.global_topk_softmax(feat, r.search, 5, 1.0, mutual=True)
        want = want + torch.einsum("nk,nkc->nc", w, r.labels[cell])
    assert torch.allclose(got, want / 3)


def test_uvc_protocol_tracks_the_slide():
    prop, video = make(8, protocol="uvc", short_side=0)
    res = list(prop.run(video, {0: box_mask(2)}, start=0))
    for r in res[1:]:
        assert np.array_equal(r.soft.argmax(0), np.roll(res[0].soft.argmax(0), r.index, axis=1)), r.index


# -- selection from the model spec, overrides, CLI ----------------------------------------------------

def test_spec_selects_its_protocol_and_overrides_win(tmp_path):
    from engine.models import load_encoder, random_encoder, save_checkpoint
    enc = random_encoder("mast-r18-s4")
    path = tmp_path / "mast.pt"
    save_checkpoint(path, enc, "mast")
    loaded = load_encoder(path)
    prop = Propagator(loaded, device="cpu")
    assert prop.protocol.name == "mast" and prop.params.protocol == "mast"
    assert (prop.protocol.references, prop.protocol.window, prop.protocol.topk, prop.protocol.memory) == \
        ("mast", "square", 0, "hard")
    over = Propagator(loaded, PropagationParams(topk=7, memory="soft"), device="cpu").protocol
    assert over.name == "mast" and over.topk == 7 and over.memory == "soft" and over.references == "mast"
    assert Propagator(loaded, PropagationParams(protocol="crw"), device="cpu").protocol == protocols.get("crw")
    expect = {"crw-r18-s8": ("crw", 12.0, 0), "liir-r18-s4": ("liir", 14.0, 0), "stt-r18-s4": ("stt", 35.0, 480),
              "stt-r18-s8": ("stt", 12.0, 480), "uvc-r18-s8": ("uvc", 0.0, 480),
              "contrastcorr-r18-s8": ("contrastcorr", 0.0, 560)}
    from engine.models.specs import get_spec
    for spec, (name, radius, side) in expect.items():
        pr = protocols.from_spec(get_spec(spec))
        assert (pr.name, pr.short_side) == (name, side), spec
        if pr.window != "none":
            assert pr.radius == radius, spec
    # the CRW default is untouched: CRW spec + default params = the registry's CRW protocol
    assert Propagator(random_encoder("crw-r18-s8"), device="cpu").protocol == protocols.get("crw")
    with pytest.raises(ConfigError, match="per_reference"):
        Propagator(loaded, PropagationParams(protocol="uvc", window="square"), device="cpu")
    with pytest.raises(ConfigError, match="protocol must be one of"):
        PropagationParams(protocol="bogus").validate()


def test_resolution_rules():
    assert protocols.processing_size(854, 480, protocols.get("uvc")) == (832, 480)
    assert protocols.processing_size(854, 480, protocols.get("contrastcorr")) == (960, 560)
    assert protocols.processing_size(480, 854, protocols.get("stt")) == (480, 854)
    prop, video = make(3, protocol="uvc")          # 160x96 -> short side 480, long side floored to 64
    assert prop.frame_grid(video)[0] == (768, 480)


def test_cli_protocol_flag(tmp_path):
    from engine.cli import bench, common
    from engine.cli import propagate as cli
    args = cli.parser().parse_args(["v.mp4", "--mask", "m.png", "--out", "o", "--protocol", "stt", "--topk", "3",
                                    "--window", "circle"])
    params = common.params_from_args(args)
    assert (params.protocol, params.topk, params.window, params.radius) == ("stt", 3, "circle", None)
    out = tmp_path / "b.json"
    rc = bench.main([str(DEMO / "demo.mp4"), "--frames", "3", "--warmup", "0", "--random-init", "--model",
                     "mast-r18-s4", "--scale", "0.125", "--device", "cpu", "--json", str(out)])
    assert rc == 0
    p = json.loads(out.read_text())["params"]
    assert (p["protocol"], p["topk"], p["window"], p["memory"]) == ("mast", 0, "square", "hard")
    rc = bench.main([str(DEMO / "demo.mp4"), "--frames", "3", "--warmup", "0", "--random-init", "--model",
                     "mast-r18-s4", "--scale", "0.125", "--device", "cpu", "--json", str(out), "--protocol", "crw"])
    assert rc == 0 and json.loads(out.read_text())["params"]["protocol"] == "crw"
