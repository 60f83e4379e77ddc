"""Adapt-to-this-video (train/adapt.py): on a constructed video of shifted copies of one texture the
adapted model has a lower loss and propagates better; runs are deterministic for a seed and a
number of steps; cancel and bad input leave the original model in use; the CLIs."""
import json
import threading

import cv2
import numpy as np
import pytest
import torch

from engine.errors import CheckpointError, VideoError
from engine.models import load_encoder, random_encoder
from engine.models.checkpoints import read_checkpoint, save_checkpoint
from engine.propagate import PropagationParams, Propagator
from engine.video import ArraySource
from train import adapt_cli
from train.adapt import adapt

STEP = (1, 2)          # the content moves 1 px up and 2 px left per frame


def texture_frames(n=24, size=128, seed=0):
    """Frame t = a 128x128 window of one blurred-noise texture, moved by t*STEP: a known motion."""
    rng = np.random.default_rng(seed)
    big = size + n * max(STEP) + 8
    tex = cv2.GaussianBlur(rng.random((big, big, 3)).astype(np.float32), (0, 0), 2.0)
    tex = ((tex - tex.min()) / (tex.max() - tex.min()) * 255).astype(np.uint8)
    return [np.ascontiguousarray(tex[t * STEP[0]:t * STEP[0] + size, t * STEP[1]:t * STEP[1] + size])
            for t in range(n)]


def square_iou(encoder, frames) -> float:
    """Mean IoU of a propagated 40x40 square against where the texture moved it."""
    m0 = np.zeros(frames[0].shape[:2], np.uint8)
    m0[40:80, 40:80] = 1
    ious = []
    for r in Propagator(encoder, PropagationParams(precision="fp32"), device="cpu").run(ArraySource(frames), {0: m0}, start=0):
        if r.index == 0:
            continue
        dy, dx = STEP[0] * r.index, STEP[1] * r.index
        gt = np.zeros_like(m0)
        gt[max(0, 40 - dy):max(0, 80 - dy), max(0, 40 - dx):max(0, 80 - dx)] = 1
        ious.append(((r.mask == 1) & (gt == 1)).sum() / max(1, ((r.mask == 1) | (gt == 1)).sum()))
    return float(np.mean(ious))


@pytest.fixture(scope="module")
def frames():
    return texture_frames()


def test_adapting_to_a_shifted_texture_lowers_the_loss_and_improves_propagation(frames, tmp_path):
    torch.manual_seed(0)
    base = load_encoder()
    out = tmp_path / "adapted.pt"
    res = adapt(ArraySource(frames, path="texture"), out=out, steps=8, seconds=None, seed=0, device="cpu")
    assert res.steps == 8 and not res.cancelled and res.method == "crw"
    assert res.loss_after < 0.8 * res.loss_before                         # its own loss, on fixed probe clips
    before, after = square_iou(base, frames), square_iou(load_encoder(checkpoint=out), frames)
    assert after > before + 0.02, (before, after)
    ck = read_checkpoint(out)                                             # our format, weights_only
    assert ck["method"] == "crw" and ck["metrics"]["adapt"]["steps"] == 8
    assert ck["data"]["adapted_on"]["video"] == "texture" and ck["adapted_from"].endswith("default.pt")
    assert ck["model_spec"] == read_checkpoint(ck["adapted_from"])["model_spec"]   # the tuned protocol kept


def test_same_seed_and_steps_give_identical_weights(frames):
    a = adapt(ArraySource(frames[:12]), steps=2, seconds=None, seed=3, device="cpu").encoder.state_dict()
    b = adapt(ArraySource(frames[:12]), steps=2, seconds=None, seed=3, device="cpu").encoder.state_dict()
    c = adapt(ArraySource(frames[:12]), steps=2, seconds=None, seed=4, device="cpu").encoder.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_cancel_mid_run_writes_nothing_and_keeps_the_previous_model(frames, tmp_path):
    out = tmp_path / "adapted.pt"
    out.write_bytes(b"the previous adapted model")
    stop = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.step)
        stop.set()                     # the person pressed Cancel during the first step

    res = adapt(ArraySource(frames[:12]), out=out, seconds=600, seed=0, device="cpu", progress=progress, cancel=stop)
    assert res.cancelled and res.steps == 1 and seen == [1] and res.encoder is None
    assert out.read_bytes() == b"the previous adapted model"


class BrokenSource(ArraySource):
    def _decode(self, i):
        raise VideoError(self.path, f"frame {i}: invalid data found when processing input")


def test_bad_input_gives_typed_errors_naming_the_file(frames, tmp_path, capsys):
    with pytest.raises(VideoError, match="broken.mp4.*could not be decoded for adaptation"):
        adapt(BrokenSource(frames[:12], path="broken.mp4"), steps=1, seconds=None, device="cpu")
    plain = tmp_path / "published.pt"                 # weights without a training method
    save_checkpoint(plain, random_encoder("crw-r18-s8"), "imported")
    with pytest.raises(CheckpointError, match="published.pt.*no training loss"):
        adapt(ArraySource(frames[:12]), checkpoint=plain, steps=1, seconds=None, device="cpu")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    assert adapt_cli.main([str(corrupt), "--out", str(tmp_path / "x.pt"), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "corrupt.mp4" in err and not (tmp_path / "x.pt").exists()


def test_cli_adapts_and_propagate_adapts_first(frames, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames[:10]):
        cv2.imwrite(str(folder / f"{i:05d}.png"), f[..., ::-1])
    out, summary = tmp_path / "a.pt", tmp_path / "a.json"
    assert adapt_cli.main([str(folder), "--out", str(out), "--steps", "2", "--device", "cpu",
                           "--json", str(summary)]) == 0
    s = json.loads(summary.read_text())
    assert s["steps"] == 2 and s["out"] == str(out) and s["loss_after"] < s["loss_before"]
    assert load_encoder(checkpoint=out).spec.name == "crw-r18-s8"

    from engine.cli import propagate
    mask = tmp_path / "m.png"
    m = np.zeros((128, 128), np.uint8)
    m[40:80, 40:80] = 1
    from engine.labels import write_mask
    write_mask(mask, m)
    res = tmp_path / "p.json"
    assert propagate.main([str(folder), "--mask", str(mask), "--out", str(tmp_path / "masks"), "--adapt-seconds",
                           "3", "--device", "cpu", "--json", str(res)]) == 0
    p = json.loads(res.read_text())
    assert p["frames"] == 10 and p["adaptation"]["steps"] >= 1 and p["adaptation"]["method"] == "crw"
