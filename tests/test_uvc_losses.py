"""UVC's pieces (spec §6) on constructed cases with known answers, and the published auto-encoder."""
from pathlib import Path

import numpy as np
import pytest
import torch

from train.methods.uvc_parts import (LabAutoEncoder, box_around, concentration_spread, concentration_windows,
                                     diff_crop, lab8, lab_l1, locate, transport)


def test_identical_frames_transport_colour_exactly():
    g = torch.Generator().manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(1, 16, 36, generator=g), dim=1) * 30   # 6x6 cells
    a = torch.softmax(torch.einsum("bcr,bct->brt", f, f), dim=1)                       # over the reference
    colour = torch.rand(1, 3, 36, generator=g)
    out = transport(a, colour)
    assert torch.allclose(out, colour, atol=1e-4)
    assert float(lab_l1(out.view(1, 3, 6, 6), colour.view(1, 3, 6, 6))[0]) < 1e-3


def test_lab_l1_weights_chroma_ten_times():
    t = torch.zeros(1, 3, 4, 4)
    assert float(lab_l1(t + torch.tensor([0.1, 0.0, 0.0])[:, None, None], t)[0]) == pytest.approx(0.1)
    assert float(lab_l1(t + torch.tensor([0.0, 0.1, 0.0])[:, None, None], t)[0]) == pytest.approx(1.0)


def test_concentration_is_zero_for_one_hot_and_grows_with_spread():
    h = w = 8
    n = h * w
    one_hot = torch.eye(n)[None]
    assert float(concentration_spread(one_hot, h, w)) == pytest.approx(0.0, abs=1e-6)
    values = []
    for sigma in (0.5, 1.0, 2.0):
        yy, xx = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
        pos = torch.stack([xx.flatten(), yy.flatten()], 1)
        a = torch.softmax(-torch.cdist(pos, pos) ** 2 / (2 * sigma ** 2), dim=0)[None]
        values.append(float(concentration_spread(a, h, w)))
    assert 0 < values[0] < values[1] < values[2]
    # the released window version: zero when every 8x8 block maps to one point, positive for identity
    s_const = torch.zeros(1, n, n)
    s_const[:, 0, :] = 50.0                                # every target picks reference cell 0
    s_const[:, :, 0] = 50.0
    assert float(concentration_windows(s_const, h, w)) < float(concentration_windows(50 * torch.eye(n)[None], h, w))


def test_localisation_finds_a_box_around_a_displaced_patch_and_crops_it_back():
    g = torch.Generator().manual_seed(1)
    H = W = 20
    target = torch.nn.functional.normalize(torch.randn(1, 32, H, W, generator=g), dim=1)
    y0, x0, s = 9, 4, 6                                      # the patch sits at (x 4..9, y 9..14)
    patch = target[:, :, y0:y0 + s, x0:x0 + s]
    scores = 40 * torch.einsum("bcr,bct->brt", patch.flatten(2), target.flatten(2))
    centre = locate(scores, H, W)
    assert torch.allclose(centre[0], torch.tensor([x0 + (s - 1) / 2, y0 + (s - 1) / 2]), atol=0.05)
    box = box_around(centre, s, H, W)
    assert torch.allclose(box[0], torch.tensor([float(x0), float(y0), float(x0 + s), float(y0 + s)]), atol=0.05)
    crop = diff_crop(target, box, (s, s))
    assert torch.allclose(crop, patch, atol=0.03)
    # the crop is differentiable in the box (gradients reach the localisation)
    b = box.clone().requires_grad_()
    diff_crop(target, b, (s, s)).sum().backward()
    assert b.grad.abs().sum() > 0


WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "uvc-lab-autoencoder"
FRAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016"


@pytest.mark.shared
def test_published_auto_encoder_reconstructs_held_out_lab_frames():
    if not WEIGHTS.is_dir() or not FRAMES.is_dir():
        pytest.skip("UVC auto-encoder weights or DAVIS frames are not in ../shared")
    import cv2
    ae = LabAutoEncoder.published(WEIGHTS)
    psnr = []
    for seq in ("bmx-trees", "soapbox", "kite-surf"):                # never used to train it
        rgb = cv2.imread(str(FRAMES / seq / "JPEGImages" / "00010.jpg"))[..., ::-1]
        rgb = np.ascontiguousarray(cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA))
        x = lab8(rgb)[None]
        with torch.no_grad():
            y = ae(x)
        mse = float(((y - x) ** 2).mean()) / 4                      # [-1, 1] -> a range of 1
        psnr.append(10 * np.log10(1.0 / mse))
    print("UVC auto-encoder PSNR on held-out DAVIS frames (dB):", [round(p, 2) for p in psnr])
    assert min(psnr) > 25, psnr


def test_inter_video_terms_with_identical_and_with_distinct_videos():
    from train.methods.uvc_parts import batch_affinity, inter_transport, negative_mass
    g = torch.Generator().manual_seed(3)
    f = torch.nn.functional.normalize(torch.randn(1, 16, 4, 4, generator=g), dim=1) * 30
    e = torch.rand(1, 8, 4, 4, generator=g)
    same = batch_affinity(torch.cat([f, f]), torch.cat([f, f]))      # two copies of one video
    assert float(negative_mass(same, 2)) == pytest.approx(0.5, abs=1e-4)   # half the mass on the copy
    inter = inter_transport(same, torch.cat([e, e]))
    intra = transport(torch.softmax(torch.einsum("bcr,bct->brt", f.flatten(2), f.flatten(2)), 1), e.flatten(2))
    assert torch.allclose(inter[0], intra[0], atol=1e-4) and torch.allclose(inter[1], intra[0], atol=1e-4)
    other = torch.nn.functional.normalize(torch.randn(1, 16, 4, 4, generator=g), dim=1) * 30
    mixed = batch_affinity(torch.cat([f, other]), torch.cat([f, other]))
    assert float(negative_mass(mixed, 2)) < 0.01                     # distinct videos: nothing leaks


def test_uvc_and_contrastcorr_methods_run_both_stages():
    from train.config import load_config
    from train.methods import get_method
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    batch = {"ref_lab": torch.rand(2, 3, 64, 64, generator=g) * 2 - 1, "tgt_lab": torch.rand(2, 3, 64, 64, generator=g) * 2 - 1,
             "tgt_full_lab": torch.rand(2, 3, 128, 128, generator=g) * 2 - 1, "seed": torch.tensor([1, 2])}
    for name, keys in (("uvc", {"colour_loss", "concentration"}),
                       ("contrastcorr", {"colour_loss", "self_reconstruction", "intra_inter", "sparsity"})):
        m = get_method(name)(load_config(name, "smoke")).train()
        m.set_stage({"joint": True, "concentration": 0.3})
        out = m(batch)
        out.loss.backward()
        assert torch.isfinite(out.loss) and keys <= set(out.metrics), (name, out.metrics)
        assert m.trunk.conv1.weight.grad.abs().sum() > 0                   # gradients reach the encoder...
        assert all(p.grad is None for p in m.ae.parameters())              # ...never the frozen auto-encoder
        assert m.export_encoder().spec.name == f"{name}-r18-s8"


def test_auto_encoder_trains_with_the_framework_and_feeds_uvc(tmp_path):
    """`uvc_ae` on the one trainer: the reconstruction improves, the checkpoint is accepted as UVC's
    frozen `autoencoder`, and the engine refuses it as a correspondence model."""
    import json

    from engine.errors import CheckpointError
    from engine.models import load_encoder
    from tests.videos import write_video
    from train.config import load_config
    from train.methods import get_method
    from train.trainer import Trainer

    (tmp_path / "clips").mkdir()
    write_video(tmp_path / "clips" / "a.mp4", n=24, size=(96, 64))
    cfg = load_config("uvc_ae", "smoke", ["train.max_steps=12", "train.log_every=1", "train.ckpt_every=12",
                                          "optim.lr=0.003"])
    out = tmp_path / "run"
    Trainer(cfg, tmp_path / "clips", out, quiet=True).run()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = np.mean([r["loss"] for r in rows[:3]]), np.mean([r["loss"] for r in rows[-3:]])
    assert last < 0.85 * first, (first, last)
    assert rows[-1]["psnr_db"] > rows[0]["psnr_db"] + 1

    ae = LabAutoEncoder.load(out / "checkpoint_last.pt")
    uvc = get_method("uvc")(load_config("uvc", "smoke", [f"autoencoder={out / 'checkpoint_last.pt'}"]))
    assert all(torch.equal(a, b) for a, b in zip(ae.state_dict().values(), uvc.ae.state_dict().values()))
    assert not any(p.requires_grad for p in uvc.ae.parameters())
    with pytest.raises(CheckpointError, match="auto-encoder"):
        load_encoder(checkpoint=out / "checkpoint_last.pt")


def test_joint_phase_localisation_scores_stay_float32_under_bf16_autocast(monkeypatch):
    """At tau 1 the scores are ~10^3; bf16 would move them by several units and scramble the
    localisation softmax, so they are formed in float32 whatever the trainer's autocast."""
    import train.methods.uvc as uvc_mod
    from train.config import load_config
    from train.methods import get_method
    seen, feats = [], []
    real = uvc_mod.locate
    monkeypatch.setattr(uvc_mod, "locate", lambda s, h, w: seen.append(s) or real(s, h, w))
    torch.manual_seed(0)
    m = get_method("uvc")(load_config("uvc", "smoke")).train()
    m.trunk.register_forward_hook(lambda mod, inp, out: feats.append(out.detach()))
    m.set_stage({"joint": True})
    batch = {"ref_lab": torch.rand(2, 3, 64, 64) * 2 - 1, "tgt_full_lab": torch.rand(2, 3, 128, 128) * 2 - 1,
             "seed": torch.tensor([1, 2])}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(batch)
    f_r, f_full = (f.float().flatten(2) for f in feats[:2])
    exact = torch.einsum("bcr,bct->brt", f_r, f_full)
    assert len(seen) == 1 and torch.isfinite(out.loss)
    assert float(exact.abs().max()) > 50                      # the magnitudes where bf16 rounding bites
    assert float((seen[0].detach() - exact).abs().max()) < 0.05   # bf16 scores were 2.0 off here
