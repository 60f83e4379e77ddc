"""The reconstruction family's loss (MAST, spec §4.2) on constructed cases with known answers."""
import numpy as np
import torch

from train.methods import get_method
from train.methods.mast import drop_chroma
from train.methods.reconstruct import reconstruct, reconstruction_loss, window_affinity


def distinct_features(h=12, w=16, c=32, gain=30.0, seed=0):
    """Random unit vectors per cell, scaled: a cell's own score (gain^2) dwarfs any other."""
    g = torch.Generator().manual_seed(seed)
    f = torch.nn.functional.normalize(torch.randn(1, c, h, w, generator=g), dim=1)
    return gain * f


def test_identical_frames_reconstruct_exactly_and_the_loss_is_near_zero():
    f = distinct_features()
    values = torch.rand(1, 1, 12, 16, generator=torch.Generator().manual_seed(1))
    w = window_affinity(f, f, radius=3)
    assert w.shape == (1, 49, 12 * 16) and torch.allclose(w.sum(1), torch.ones(1, 12 * 16))
    assert torch.all(w[:, 24] > 0.999)                          # the centre offset takes the weight
    pred = reconstruct(w, values, radius=3)
    assert torch.allclose(pred, values, atol=1e-4)
    # a full-resolution target that is exactly the bilinear upsampling of the cell values: zero loss
    cells = torch.rand(1, 1, 12, 16, generator=torch.Generator().manual_seed(4))
    smooth = torch.nn.functional.interpolate(cells, size=(48, 64), mode="bilinear", align_corners=False)
    loss = reconstruction_loss(reconstruct(window_affinity(f, f, 3), cells, 3), smooth)
    wrong = reconstruction_loss(reconstruct(window_affinity(f, f, 3), cells.flip(-1), 3), smooth)
    assert loss < 1e-6 and wrong > 0.1


def test_a_shifted_frame_is_recovered_by_the_local_window():
    f_r = distinct_features(seed=2)
    v_r = torch.rand(1, 2, 12, 16, generator=torch.Generator().manual_seed(3))
    dy, dx = 2, -1                                               # inside radius 3
    f_t = torch.roll(f_r, shifts=(dy, dx), dims=(2, 3))
    pred = reconstruct(window_affinity(f_t, f_r, radius=3), v_r, radius=3)
    expect = torch.roll(v_r, shifts=(dy, dx), dims=(2, 3))
    inner = (slice(None), slice(None), slice(3, 9), slice(3, 13))  # away from the wrap-around border
    assert torch.allclose(pred[inner], expect[inner], atol=1e-4)
    # beyond the radius the content cannot be found: the prediction is a blend, not the value
    far = reconstruct(window_affinity(torch.roll(f_r, shifts=(5, 0), dims=(2, 3)), f_r, radius=3), v_r, radius=3)
    assert (far[inner] - torch.roll(v_r, shifts=(5, 0), dims=(2, 3))[inner]).abs().mean() > 0.1


def test_out_of_image_offsets_score_zero_and_carry_value_zero():
    f = torch.zeros(1, 4, 5, 5)
    f[0, 0, 0, 0] = 1.0                                          # a corner cell, all other scores 0
    w = window_affinity(f, f, radius=1)
    # at the corner: 9 offsets, 5 outside the image; exp(1) for itself, exp(0) for the other 8
    corner = w[0, :, 0]
    assert torch.isclose(corner[4], torch.tensor(np.e / (np.e + 8)))
    pred = reconstruct(w, torch.ones(1, 1, 5, 5), radius=1)
    assert torch.isclose(pred[0, 0, 0, 0], (np.e + 3) / torch.tensor(np.e + 8))   # 4 inside neighbours


def test_chroma_dropout_is_per_sample_seeded_and_scales_inputs():
    x = torch.ones(4, 2, 3, 8, 8)
    out, chans = drop_chroma(x, [1, 2, 3, 4])
    again, chans2 = drop_chroma(x, [1, 2, 3, 4])
    assert torch.equal(out, again) and chans.tolist() == chans2.tolist()
    assert set(chans.tolist()) <= {1, 2}
    for i, c in enumerate(chans.tolist()):
        assert out[i, :, c].abs().sum() == 0 and torch.all(out[i, :, 0] == 1.5)   # L kept, x3/2
        assert torch.all(out[i, :, 3 - c] == 1.5)


def test_mast_method_forward_backward_and_export():
    from train.config import load_config
    torch.manual_seed(0)
    m = get_method("mast")(load_config("mast", "smoke"))
    g = torch.Generator().manual_seed(0)
    ref = torch.nn.functional.avg_pool2d(torch.randn(2, 3, 64, 64, generator=g) * 0.5, 5, 1, 2)
    clips = torch.stack([ref, torch.roll(ref, shifts=(4, -4), dims=(2, 3))], 1)
    out = m({"clips": clips, "seed": torch.tensor([5, 6])})
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and 0 < float(out.metrics["attention_peak"]) <= 1
    out.loss.backward()
    trunk = dict(m.trunk.named_parameters())
    assert trunk["conv1.0.weight"].grad.abs().sum() > 0 and trunk["post_convolution.weight"].grad.abs().sum() > 0
    enc = m.export_encoder()
    assert enc.spec.name == "mast-r18-s4" and enc.spec.stride == 4 and enc.spec.colour == "lab"


def test_negatives_from_other_videos_lower_the_positive_mass_as_the_formula_says():
    from train.methods.liir_parts import window_affinity_with_negatives
    g = torch.Generator().manual_seed(7)
    f_t, f_r = torch.randn(1, 8, 4, 5, generator=g), torch.randn(1, 8, 4, 5, generator=g)
    negs = torch.randn(1, 6, 8, generator=g)
    w0 = window_affinity_with_negatives(f_t, f_r, None, radius=1)
    w = window_affinity_with_negatives(f_t, f_r, negs, radius=1)
    assert torch.allclose(w0, window_affinity(f_t, f_r, 1), atol=1e-6)     # no negatives: plain softmax
    from train.methods.reconstruct import window_unfold
    q = f_t.reshape(1, 8, 20)
    pos = torch.einsum("bcq,bcdq->bdq", q, window_unfold(f_r, 1)).exp()
    neg = torch.einsum("bcq,bnc->bnq", q, negs).exp()
    # zero-padded offsets score 0 and count exp(0) in the denominator, as in MAST
    expected_mass = pos.sum(1) / (pos.sum(1) + neg.sum(1))
    assert torch.allclose(w.sum(1), expected_mass, atol=1e-5) and torch.all(w.sum(1) < 1)
    assert torch.allclose(w / w.sum(1, keepdim=True), w0, atol=1e-5)       # the same shape, less mass


def test_position_shifting_is_a_circular_roll_that_preserves_layout():
    from train.methods.liir_parts import shift_positions
    pe = torch.arange(2 * 6 * 8, dtype=torch.float32).view(1, 2, 6, 8).requires_grad_()
    out = shift_positions(pe, torch.Generator().manual_seed(3))
    assert not out.requires_grad and sorted(out.flatten().tolist()) == sorted(pe.flatten().tolist())
    # some roll (sy, sx) maps it back exactly: neighbours stay neighbours (cyclically)
    back = [(sy, sx) for sy in range(6) for sx in range(8)
            if torch.equal(torch.roll(out, shifts=(-sy, -sx), dims=(-2, -1)), pe.detach())]
    assert len(back) == 1


def test_compactness_prior_of_a_two_peak_map_recovers_the_peaks():
    from train.methods.liir_parts import compactness_loss, compactness_prior
    r, k = 3, 7
    logits = torch.full((1, k * k, 1), -10.0)
    logits[0, 1 * k + 2, 0] = 4.0          # peak at (y=1, x=2)
    logits[0, 5 * k + 5, 0] = 3.0          # second peak at (5, 5)
    a = torch.softmax(logits, dim=1)
    prior, v1 = compactness_prior(a, r)
    top2 = set(prior[0, :, 0].topk(2).indices.tolist())
    assert top2 == {1 * k + 2, 5 * k + 5} and torch.isclose(v1[0, 0], a[0, 1 * k + 2, 0])
    w1, w2 = torch.softmax(torch.tensor([a[0, 1 * k + 2, 0], a[0, 5 * k + 5, 0]]), 0)
    assert torch.isclose(prior[0, 1 * k + 2, 0], w1, atol=1e-4) and torch.isclose(prior[0, 5 * k + 5, 0], w2, atol=1e-4)
    # half maximum one FWHM/2 = 0.5 cell away is not on the grid; one cell away: exp(-4 ln 2)
    assert torch.isclose(prior[0, 1 * k + 3, 0], w1 * 2 ** -4, atol=1e-4)
    # a compact map is closer to its prior than the peaky two-point one; queries under the threshold are masked
    assert compactness_loss(prior, r, threshold=0.0) < compactness_loss(a, r, threshold=0.0)
    assert compactness_loss(a, r, threshold=0.99) == 0


def test_liir_bank_holds_momentum_features_and_never_serves_a_query_its_own_video():
    from train.config import load_config
    torch.manual_seed(0)
    cfg = load_config("liir", "smoke")
    cfg["loss"].update(bank_frames=4, bank_points=3)
    m = get_method("liir")(cfg)
    m.set_stage({"inter": True, "compact": True})
    clips = torch.nn.functional.avg_pool2d(torch.randn(4, 3, 32, 32) * 0.5, 3, 1, 1).view(2, 2, 3, 32, 32)

    def step(sources, seeds):
        return m({"clips": clips, "seed": torch.tensor(seeds), "source": torch.tensor(sources)})

    out = step([0, 0], [1, 2])
    assert abs(float(out.metrics["positive_mass"]) - 1) < 1e-5            # empty bank: no negatives
    assert (m.bank_source == 0).sum() == 6 and int(m.bank_ptr) == 6      # 2 frames x 3 points, FIFO
    assert abs(float(step([0, 0], [3, 4]).metrics["positive_mass"]) - 1) < 1e-5   # only its own video in the bank
    assert float(step([1, 1], [5, 6]).metrics["positive_mass"]) < 0.999  # another video's features: mass lost
    assert (m.bank_source >= 0).all() and int(m.bank_ptr) == 6           # 12 slots, wrapped around
    # the momentum copy trails the encoder; the exported encoder is the trained one with its positions
    assert m.export_encoder().spec.name == "liir-r18-s4" and "pos_embed1" in dict(m.export_encoder().trunk.named_parameters())
