"""The headless CLIs end to end: outputs, --json, and bad input -> exit 2, a message, no output."""
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import bench, demo, propagate
from engine.labels import read_mask, write_mask
from tests.videos import write_empty

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo"
FAST = ["--random-init", "--scale", "0.25", "--device", "cpu"]


def test_propagate_writes_palette_masks_for_every_frame(tmp_path):
    out = tmp_path / "masks"
    rc = propagate.main([str(DEMO / "demo.mp4"), "--mask", str(DEMO / "demo_mask_00000.png"), "--out", str(out),
                         "--json", str(tmp_path / "run.json"), "--stop", "30", *FAST])
    assert rc == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(30)]
    first = read_mask(files[0])
    gt = read_mask(DEMO / "demo_mask_00000.png")
    assert set(np.unique(first)) <= {0, 1, 2, 3}
    assert (first == gt).mean() > 0.95  # the keyframe seen through the (coarse, 1/32) feature grid
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["frames"] == 30 and summary["keyframe"] == 0 and len(summary["confidence"]) == 30


def test_propagate_keypoints_backward_from_the_middle(tmp_path):
    kp = json.loads((DEMO / "demo_keypoints" / "00040.json").read_text())
    (tmp_path / "kp.json").write_text(json.dumps(kp))
    out = tmp_path / "kp"
    rc = propagate.main([str(DEMO / "demo.mp4"), "--keypoints", str(tmp_path / "kp.json"), "--frame", "40",
                         "--backward", "--stop", "24", "--out", str(out), *FAST])
    assert rc == 0
    doc = json.loads((out / "keypoints.json").read_text())
    assert sorted(map(int, doc["frames"])) == list(range(25, 41))
    absent = [i for i, p in enumerate(kp["points"]) if p is None]
    for frame in doc["frames"].values():
        assert all(frame["points"][i] is None for i in absent)


def _bad(tmp_path, capsys, args):
    out = tmp_path / "out"
    rc = propagate.main([*args, "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
    return err


def test_bad_inputs_give_a_clear_error_and_no_output(tmp_path, capsys):
    mask = str(DEMO / "demo_mask_00000.png")
    video = str(DEMO / "demo.mp4")

    cut = tmp_path / "cut.mp4"
    data = (DEMO / "demo.mp4").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert "cut.mp4" in _bad(tmp_path, capsys, [str(cut), "--mask", mask])

    empty = write_empty(tmp_path / "empty.mp4")
    assert "empty.mp4" in _bad(tmp_path, capsys, [str(empty), "--mask", mask])

    small = tmp_path / "small.png"
    write_mask(small, np.ones((10, 10), np.uint8))
    assert "small.png: mask is 10x10 but the video frames are 854x480" in _bad(tmp_path, capsys, [video, "--mask", str(small)])

    blank = tmp_path / "blank.png"
    write_mask(blank, np.zeros((480, 854), np.uint8))
    assert "empty" in _bad(tmp_path, capsys, [video, "--mask", str(blank)])

    kp = tmp_path / "kp.json"
    kp.write_text(json.dumps({"names": ["a", "b"], "points": [[10, 10], [900, 20]]}))
    assert "outside" in _bad(tmp_path, capsys, [video, "--keypoints", str(kp)])


def test_bad_checkpoints_are_refused_with_what_was_found(tmp_path, capsys):
    mask = str(DEMO / "demo_mask_00000.png")
    video = str(DEMO / "demo.mp4")
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "nonsense.weight": torch.zeros(3)}, wrong)
    out = tmp_path / "out"
    rc = propagate.main([video, "--mask", mask, "--out", str(out), "--checkpoint", str(wrong), "--model", "crw-r18-s8"])
    err = capsys.readouterr().err
    assert rc == 2 and "wrong.pt" in err and "nonsense.weight" in err and "missing" in err.lower()
    assert not out.exists()

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"model": shutil.rmtree}, f)
    rc = propagate.main([video, "--mask", mask, "--out", str(out), "--checkpoint", str(evil)])
    err = capsys.readouterr().err
    assert rc == 2 and "evil.pt" in err
    assert not out.exists()


def test_demo_and_bench_report_numbers(tmp_path, capsys):
    rc = demo.main(["--out", str(tmp_path / "demo"), "--frames", "6", "--json", str(tmp_path / "demo.json"), *FAST])
    assert rc == 0
    d = json.loads((tmp_path / "demo.json").read_text())
    assert d["frames"] == 6 and 0 <= d["J-Mean"] <= 1 and 0 <= d["F-Mean"] <= 1
    assert (tmp_path / "demo" / "overlay_strip.png").exists()

    rc = bench.main([str(DEMO / "demo.mp4"), "--frames", "8", "--json", str(tmp_path / "bench.json"), *FAST])
    assert rc == 0
    b = json.loads((tmp_path / "bench.json").read_text())
    assert b["frames"] == 8 and b["fps"] > 0 and b["peak_rss_mb"] > 0
    assert set(b["stage_median_ms"]) == {"decode_video_ms", "features_ms", "affinity_ms", "decode_ms"}
