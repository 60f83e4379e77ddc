"""The tiled radius window and the top-k equal the dense CRW formula."""
import math

import pytest
import torch

from engine import affinity


def dense_window_topk(q, k, h, w, radius, topk):
    n = h * w
    ys, xs = torch.arange(n) // w, torch.arange(n) % w
    d2 = (ys[:, None] - ys[None]) ** 2 + (xs[:, None] - xs[None]) ** 2  # [key, query]
    s = k.t() @ q
    s = s.masked_fill(d2.double() >= radius ** 2, float("-inf"))
    v, i = s.t().topk(topk, dim=1)
    return v, i


@pytest.mark.parametrize("h,w,radius,tile", [(9, 13, 3, 4), (7, 11, 2.5, 3), (12, 10, 5, 8), (5, 6, 12, 8)])
def test_window_topk_matches_dense(h, w, radius, tile):
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(16, h * w, generator=g), dim=0)
    k = torch.nn.functional.normalize(torch.randn(16, h * w, generator=g), dim=0)
    geo = affinity.WindowGeometry.build(h, w, radius, tile, "cpu")
    kk = min(5, min(sum(1 for dy in range(-h, h) for dx in range(-w, w) if dy * dy + dx * dx < radius ** 2), h * w))
    v, i = affinity.window_topk(q, k, geo, kk)
    vd, idd = dense_window_topk(q, k, h, w, radius, kk)
    finite = torch.isfinite(vd)
    assert torch.equal(torch.isfinite(v), finite)
    assert torch.allclose(v[finite], vd[finite], atol=1e-6)
    assert torch.equal(i[finite], idd[finite])


def test_window_reach_covers_the_radius():
    for radius in (1, 2, 2.5, 12, 12.5):
        geo = affinity.WindowGeometry.build(30, 30, radius, 4, "cpu")
        assert geo.reach == max(d for d in range(0, 20) if d * d < radius ** 2)


def test_dense_topk_and_exact_rescoring():
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(8, 50, generator=g), dim=0)
    k = torch.nn.functional.normalize(torch.randn(8, 40, generator=g), dim=0)
    v, i = affinity.dense_topk(q, k, 4, chunk=7)
    vd, idd = (q.t() @ k).topk(4, dim=1)
    assert torch.equal(i, idd) and torch.allclose(v, vd)
    slot = torch.zeros_like(i)
    assert torch.allclose(affinity.exact_scores(q, [k], slot, i), vd, atol=1e-6)
