"""Known-answer tests of the walk losses (CRW, JSTG), node dropout and gradient flow."""
import math

import pytest
import torch
import torch.nn.functional as F

from train.methods.crw import CRW
from train.methods.jstg import JSTG, NeighbourAggregation, node_keep_mask, pixel_discrepancy, topological_prior
from train.methods.walk import (cycle_losses, edge_drop_masks, palindrome_walks, reduce_losses, transitions,
                                walk_lengths)


def orthonormal_nodes(b=2, c=64, n=49, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(b, c, n, generator=g))   # columns: n orthonormal vectors in R^c
    return q


def walk_loss(q, tau=0.05, rule="crw", reduction="mean", keep=None, drops=None):
    fwd, bwd = transitions(q, tau, drops, True, keep)
    per_k = cycle_losses(palindrome_walks(fwd, bwd, walk_lengths(q.shape[2], rule)),
                         None if keep is None else keep[:, 0])
    return reduce_losses(per_k, reduction), per_k


def test_walk_lengths_follow_the_crw_code_and_the_paper():
    assert walk_lengths(4, "crw") == [2, 3]          # range(1, T-1), k = i+1: no one-step cycle
    assert walk_lengths(10, "all") == list(range(1, 10))


def test_identical_frames_with_distinct_nodes_give_near_zero_loss():
    base = orthonormal_nodes()
    q = base[:, :, None, :].expand(-1, -1, 5, -1).contiguous()       # 5 identical frames
    loss, per_k = walk_loss(q, rule="all", reduction="sum")
    assert loss.item() < 1e-4
    assert all(acc.item() == 1.0 for _, acc in per_k.values())


def test_permuted_nodes_with_matching_features_give_near_zero_loss():
    g = torch.Generator().manual_seed(1)
    frames = [orthonormal_nodes()]
    for _ in range(4):   # every frame is the previous one with its nodes in another order
        frames.append(frames[-1][:, :, torch.randperm(49, generator=g)])
    q = torch.stack(frames, 2)
    loss, per_k = walk_loss(q, rule="all")
    assert loss.item() < 1e-4
    # ...while pairing the frames' nodes by index (what a position-only model would do) is far off:
    assert (q[:, :, 0] * q[:, :, 1]).sum(1).mean() < 0.2


def test_uninformative_features_give_log_n():
    n = 49
    const = torch.ones(2, 16, 4, n) / 4.0      # every node identical: uniform transitions, exactly log N
    loss, per_k = walk_loss(const)
    assert loss.item() == pytest.approx(math.log(n), rel=1e-5)
    assert all(l.item() == pytest.approx(math.log(n), rel=1e-5) for l, _ in per_k.values())
    # Shuffled (unrelated) random features: near-uniform walks at a unit temperature.
    g = torch.Generator().manual_seed(2)
    rnd = F.normalize(torch.randn(4, 128, 4, n, generator=g), dim=1)
    loss_rnd, _ = walk_loss(rnd, tau=1.0)
    assert loss_rnd.item() == pytest.approx(math.log(n), rel=0.02)


def test_edge_dropout_backward_inherits_forward_drops():
    q = orthonormal_nodes(b=1, n=9)[:, :, None].expand(-1, -1, 3, -1).contiguous()
    drops = edge_drop_masks([123], 2, 9, 0.3, "cpu")
    fwd, bwd = transitions(q, 0.05, drops, inherit_drops=True)
    dropped_fwd = drops[0, 0, 0]
    assert (fwd[0][0][dropped_fwd] < 1e-30).all()
    # CRW quirk (spec §11a-4): the backward step also misses the forward drops, transposed.
    assert (bwd[0][0][dropped_fwd.T] < 1e-30).all()
    _, bwd_ind = transitions(q, 0.05, drops, inherit_drops=False)
    assert not (bwd_ind[0][0][dropped_fwd.T & ~drops[0, 0, 1]] < 1e-30).all()
    # The draw is a function of the sample's seed only.
    assert torch.equal(drops, edge_drop_masks([123], 2, 9, 0.3, "cpu"))


def test_topological_prior_and_its_log_init():
    p = topological_prior()
    assert p.sum().item() == pytest.approx(1.0)
    assert p[1, 1].item() == pytest.approx(3 / 15) and p[0, 1].item() == pytest.approx(2 / 15)
    assert p[0, 0].item() == pytest.approx(1 / 15)
    agg = NeighbourAggregation((3, 3), "log_prior")
    assert torch.allclose(agg.weights(), p, atol=1e-6)


def test_neighbour_aggregation_matches_a_direct_sum_with_border_renormalisation():
    agg = NeighbourAggregation((3, 3), "random")
    q = F.normalize(torch.randn(1, 8, 2, 16), dim=1)
    out = agg(q, 4, renormalise=False)
    w = agg.weights()
    grid = q.view(1, 8, 2, 4, 4)
    for (y, x) in [(0, 0), (1, 2), (3, 3)]:
        acc, mass = torch.zeros(8, 2), 0.0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if 0 <= y + dy < 4 and 0 <= x + dx < 4:
                    acc += w[dy + 1, dx + 1] * grid[0, :, :, y + dy, x + dx]
                    mass += w[dy + 1, dx + 1].item()
        assert torch.allclose(out[0, :, :, y * 4 + x], acc / mass, atol=1e-6)


def tiny_config(method="crw", **loss):
    return {"method": method, "model": "crw-r18-s8", "train_layer": "layer3",
            "loss": {"temperature": 0.05, "edge_dropout": 0.0, "walk_lengths": "all", "reduction": "sum", **loss}}


def tiny_batch(b=2, t=3, grid=3, p=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"clips": torch.randn(b, t, grid * grid, 3, p, p, generator=g),
            "seed": torch.arange(b, dtype=torch.int64) + 100}


def test_jstg_with_one_hot_edge_vector_reduces_to_crw():
    torch.manual_seed(0)
    crw = CRW(tiny_config("crw"))
    torch.manual_seed(0)
    jstg = JSTG(tiny_config("jstg"))
    jstg.load_state_dict({**crw.state_dict(), "aggregate.edge_logits": jstg.aggregate.edge_logits.detach()})
    with torch.no_grad():
        one_hot = torch.full((3, 3), -math.inf)
        one_hot[1, 1] = 0.0
        jstg.aggregate.edge_logits.copy_(one_hot)
    crw.train(), jstg.train()
    batch = tiny_batch()
    a, b = crw(batch), jstg(batch)
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-6, abs=1e-6)
    for k in (1, 2):
        assert a.metrics[f"walk_accuracy_k{k}"].item() == b.metrics[f"walk_accuracy_k{k}"].item()
    # ...and with the prior it does not (the graph changes the walk).
    with torch.no_grad():
        jstg.aggregate.edge_logits.copy_(topological_prior().log())
    assert abs(jstg(batch).loss.item() - a.loss.item()) > 1e-4


def _pixels(rows):
    """[M, C=4, 1, hw=20] maps whose pixels are basis vectors in the given counts per node."""
    eye = torch.eye(4)
    maps = []
    for counts in rows:
        px = torch.cat([eye[i].repeat(c, 1) for i, c in enumerate(counts)])      # [20, 4]
        maps.append(px.T.reshape(4, 1, 20))
    return torch.stack(maps)


def test_node_dropout_removes_exactly_the_nodes_under_the_threshold():
    # δ = 1 - ||mean unit pixel||²: uniform 0; 18/2 split 1-(.81+.01)=0.18; 17/3 split 0.255;
    # 10/10 split 0.5; four-way 0.75.
    rows = [(20, 0, 0, 0), (18, 2, 0, 0), (17, 3, 0, 0), (10, 10, 0, 0), (5, 5, 5, 5), (20, 0, 0, 0)]
    delta = pixel_discrepancy(_pixels(rows), torch.nn.Identity())
    assert torch.allclose(delta, torch.tensor([0.0, 0.18, 0.255, 0.5, 0.75, 0.0]), atol=1e-6)
    keep = node_keep_mask(delta.view(1, 1, 6), 0.2)
    assert keep.view(-1).tolist() == [False, False, True, True, True, False]
    # A clip where a frame would keep fewer than 2 nodes trains without node dropout.
    few = node_keep_mask(torch.tensor([[[0.0, 0.1, 0.9], [0.5, 0.5, 0.5]]]), 0.2)
    assert few.all()


def test_dropped_nodes_take_no_walk_mass_and_start_no_walk():
    q = orthonormal_nodes(b=1, n=9)[:, :, None].expand(-1, -1, 3, -1).contiguous()
    keep = torch.ones(1, 3, 9, dtype=torch.bool)
    keep[0, 1, [2, 5]] = False
    keep[0, 0, 4] = False
    fwd, bwd = transitions(q, 0.05, None, True, keep)
    assert (fwd[0][0][:, [2, 5]] < 1e-30).all()         # nothing walks into a dropped node of frame 1
    assert (bwd[0][0][:, 4] < 1e-30).all()              # nor back into the dropped node of frame 0
    walks = palindrome_walks(fwd, bwd, [1, 2])
    per_k = cycle_losses(walks, keep[:, 0])
    for k, (loss, acc) in per_k.items():
        diag = torch.diagonal(walks[k][0])
        # Nodes whose frame-1 twin was dropped get lost; the others come home.
        others = [i for i in range(9) if i not in (2, 4, 5)]
        assert (diag[others] > 0.999).all() and (diag[[2, 5]] < 0.5).all()
        # Node 4 of frame 0 cannot return at all (its column is removed) but it starts no walk:
        # the loss is the mean over the 8 kept start nodes only.
        kept = [i for i in range(9) if i != 4]
        assert loss.item() == pytest.approx((-torch.log(diag[kept] + 1e-20)).mean().item(), rel=1e-5)


@pytest.mark.parametrize("method", ["crw", "jstg"])
def test_gradients_reach_every_parameter(method):
    torch.manual_seed(0)
    cfg = tiny_config(method, edge_dropout=0.1)
    model = (CRW if method == "crw" else JSTG)(cfg).train()
    if method == "jstg":
        model.set_stage({"node_dropout": True, "node_dropout_threshold": 0.05})
    out = model(tiny_batch())
    out.loss.backward()
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing
    if method == "jstg":
        assert params["aggregate.edge_logits"].grad.abs().sum() > 0
        assert 0 < out.metrics["node_keep_fraction"].item() <= 1
