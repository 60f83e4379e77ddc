"""The tiled radius window and the top-k equal the dense CRW formula."""
import math

import pytest
import torch

from engine import affinity


def window_scores(q, k, h, w, radius):
    """Dense [query, key] scores with -inf outside the radius window."""
    n = h * w
    ys, xs = torch.arange(n) // w, torch.arange(n) % w
    d2 = (ys[:, None] - ys[None]) ** 2 + (xs[:, None] - xs[None]) ** 2
    return (q.t() @ k).masked_fill(d2.double() >= radius ** 2, float("-inf"))


def features(g, c, n, relu):
    f = torch.randn(c, n, generator=g)
    return torch.nn.functional.normalize(f.relu() if relu else f, dim=0)


@pytest.mark.parametrize("cache_bytes", [None, 0])  # 0: regions gathered per chunk (large windows)
@pytest.mark.parametrize("relu", [True, False])  # signed scores exercise the exact-maxima fallback
@pytest.mark.parametrize("h,w,radius,tile", [(9, 13, 3, 4), (7, 11, 2.5, 3), (12, 10, 5, 8), (5, 6, 12, 8)])
def test_window_topk_multi_matches_dense(h, w, radius, tile, relu, cache_bytes):
    g = torch.Generator().manual_seed(0)
    n = h * w
    q = features(g, 16, n, relu)
    keys = [features(g, 16, n, relu) for _ in range(3)]
    geo = affinity.WindowGeometry.build(h, w, radius, tile, "cpu")
    window = sum(1 for dy in range(-h, h) for dx in range(-w, w) if dy * dy + dx * dx < radius ** 2)
    kk = min(7, window)
    regions = [affinity.KeyRegions(k, geo, torch.float32, cache_bytes) for k in keys]
    assert isinstance(regions[0].regions, torch.Tensor) == (cache_bytes is None)
    v, f, c = affinity.window_topk_multi(q, regions, geo, kk)
    dense = torch.cat([window_scores(q, k, h, w, radius) for k in keys], 1)  # [n, 3n], frame-major
    vd, idd = dense.topk(kk, dim=1)
    finite = torch.isfinite(vd)
    assert torch.equal(torch.isfinite(v), finite)
    assert torch.allclose(v[finite], vd[finite], atol=1e-6)
    assert torch.equal((f * n + c)[finite], idd[finite])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_block_max_is_exact_for_signed_values_and_inf(dtype):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 40, 9, generator=g)
    x[torch.rand(x.shape, generator=g) < 0.3] = float("-inf")
    x[0, 0] = float("-inf")
    x[1, 1] = -0.0
    x = x.to(dtype)
    assert torch.equal(affinity.block_max(x), x.amax(-1))
    for relu in (True, False):
        y = x.clamp_min(0) if relu else x
        idx = affinity.top_blocks(y, 5)
        expected = y.amax(-1).topk(5, dim=-1).values
        assert torch.equal(torch.gather(y.amax(-1), -1, idx).sort(-1, descending=True).values, expected)


def test_dense_topk_blocked_and_exact_rescoring():
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(8, 50, generator=g), dim=0)
    k = torch.nn.functional.normalize(torch.randn(8, 6 * 7, generator=g), dim=0)
    v, i = affinity.dense_topk_blocked(q, k, 4, row=7, chunk=7)
    vd, idd = (q.t() @ k).topk(4, dim=1)
    assert torch.equal(i, idd) and torch.allclose(v, vd)
    slot = torch.zeros_like(i)
    assert torch.allclose(affinity.exact_scores(q.t().contiguous(), [k.t().contiguous()], slot, i), vd, atol=1e-6)
    # candidates spread over two frames come back in their original positions
    k2 = torch.nn.functional.normalize(torch.randn(8, 42, generator=g), dim=0)
    slot = torch.randint(0, 2, i.shape, generator=g)
    want = torch.where(slot == 0, (q.t() @ k).gather(1, i), (q.t() @ k2).gather(1, i))
    got = affinity.exact_scores(q.t().contiguous(), [k.t().contiguous(), k2.t().contiguous()], slot, i)
    assert torch.allclose(got, want, atol=1e-6)


def test_window_reach_covers_the_radius():
    for radius in (1, 2, 2.5, 12, 12.5):
        geo = affinity.WindowGeometry.build(30, 30, radius, 4, "cpu")
        assert geo.reach == max(d for d in range(0, 20) if d * d < radius ** 2)


