"""Spatial-then-Temporal's losses (spec §9.1, §9.4) on constructed cases with known answers."""
import math

import torch
import torch.nn.functional as F

from train.methods.stt_parts import (entropy_selection, global_affinity, global_distill_loss, info_nce,
                                     local_correlation, local_distill_loss, pool_correlation, window_mask)


def test_info_nce_matches_its_formula():
    q = F.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=1)
    k = q.clone()
    queue = F.normalize(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]), dim=1)
    t = 0.2
    expect = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(0) + math.exp(-1 / t)))
    assert abs(float(info_nce(q, k, queue, t)) - expect) < 1e-5


def test_local_correlation_stays_inside_the_window_and_rows_sum_to_one():
    f = torch.randn(2, 8, 6, 7)
    c = local_correlation(f, f.roll(1, dims=3), radius=2)
    assert torch.allclose(c.sum(-1), torch.ones(2, 42), atol=1e-5)
    assert torch.all(c[:, ~window_mask(6, 7, 2)] == 0)
    assert window_mask(6, 7, 2)[0].sum() == 9              # corner: 3x3 (clipped), interior 5x5
    assert window_mask(6, 7, 2)[3 * 7 + 3].sum() == 25


def test_pooled_pseudo_label_of_an_identity_correlation_and_its_row_sums():
    h, w = 4, 6
    c0 = torch.eye(h * w)[None]                             # each cell matches itself
    c1 = pool_correlation(c0, h, w)
    assert c1.shape == (1, 6, 6)
    assert torch.allclose(c1, torch.eye(6)[None] / 4)       # 4 fine cells of a coarse cell, averaged twice
    rnd = torch.softmax(torch.randn(1, h * w, h * w), -1)
    assert torch.allclose(pool_correlation(rnd, h, w).sum(-1), torch.full((1, 6), 0.25), atol=1e-5)


def test_distilling_a_teacher_into_an_identical_student_gives_zero_loss():
    g = torch.Generator().manual_seed(0)
    f_t, f_r = torch.randn(2, 16, 4, 4, generator=g), torch.randn(2, 16, 4, 4, generator=g)
    # global: identical affinities when the student's scaling equals the teacher's temperature
    assert torch.allclose(global_affinity(f_t, f_r, 0.07), global_affinity(f_t * 4 / 0.07, f_r, None), atol=1e-5)
    assert float(global_distill_loss(f_t * 4 / 0.07, f_r, f_t, f_r, 0.07)) < 1e-10
    assert float(global_distill_loss(f_r, f_t, f_t, f_r, 0.07)) > 1e-4
    # local: a coarse correlation equal to its pseudo-label
    c = torch.softmax(torch.randn(2, 6, 6), -1)
    assert float(local_distill_loss(c, c, torch.ones(2, 6, dtype=torch.bool))) == 0.0
    m = torch.tensor([[True, False, False, False, False, False]] * 2)
    other = c.clone()
    other[:, 1:] += 1.0                                    # errors only in unselected rows
    assert float(local_distill_loss(other, c, m)) == 0.0


def test_entropy_selection_keeps_the_fraction_with_the_largest_sum_of_neg_log_p():
    g = torch.Generator().manual_seed(0)
    f_r = torch.randn(1, 8, 10, 10, generator=g)
    f_t = f_r.clone() * 5                                   # sharp matches: many p near 0, large H...
    f_t[..., :5, :] = 0.01 * f_t[..., :5, :]                # ...the top half flat: H near 25 log 25
    sel = entropy_selection(f_t, f_r, displacement=2, fraction=0.5).view(10, 10)
    assert 45 <= int(sel.sum()) <= 50
    assert sel[5:].float().mean() > 0.9 and sel[:5].float().mean() < 0.1


def test_stt_steps_chain_step1_checkpoint_is_the_frozen_teacher_and_the_students_start(tmp_path):
    from engine.models.checkpoints import save_checkpoint
    from train.config import load_config
    from train.methods import get_method
    torch.manual_seed(0)
    s1 = get_method("stt_spatial")(load_config("stt_spatial", "smoke"))
    views = torch.randn(2, 1, 2, 3, 64, 64)
    out = s1({"views": views})
    assert torch.isfinite(out.loss) and int(s1.queue_ptr) == 2            # keys enqueued
    ck = tmp_path / "step1.pt"
    save_checkpoint(ck, s1.export_encoder(), "stt_spatial")
    cfg = load_config("stt", "smoke")
    cfg["teacher"] = str(ck)
    s2 = get_method("stt")(cfg).train()
    assert torch.equal(s2.trunk.conv1.weight, s1.trunk.conv1.weight) and torch.equal(s2.teacher.layer4[1].conv2.weight,
                                                                                     s1.trunk.layer4[1].conv2.weight)
    assert not s2.teacher.training and not any(p.requires_grad for p in s2.teacher.parameters())
    clips = torch.randn(2, 2, 3, 64, 64) * 0.3
    res = s2({"clips": clips, "rgb": torch.randn(2, 2, 3, 64, 64), "seed": torch.tensor([1, 2])})
    res.loss.backward()
    assert torch.isfinite(res.loss) and set(res.metrics) >= {"recon_fine_loss", "recon_coarse_loss",
                                                              "local_distill_loss", "global_distill_loss"}
    assert s2.trunk.layer2[0].conv1.weight.grad.abs().sum() > 0
    assert s2.export_encoder().spec.name == "stt-r18-s8"
