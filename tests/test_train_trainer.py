"""The trainer end to end on tiny synthetic clips: run folder, engine-readable checkpoints, exact
resume, configs and the CLI."""
import json

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.models import load_encoder
from engine.models.checkpoints import read_checkpoint
from tests.videos import write_video
from train import cli
from train.config import apply_overrides, load_config
from train.trainer import Trainer

TINY = ["data.clip_len=3", "data.num_workers=0", "augment.frame_size=64", "augment.patch_size=32",
        "augment.patch_stride=16", "train.batch_size=2", "train.log_every=1", "train.ckpt_every=2",
        "train.threads=0", "train.precision=fp32"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    write_video(root / "a.mp4", n=30, fps=24)
    write_video(root / "b.mp4", n=24, fps=12, size=(80, 64))
    return root


def tiny(method="crw", steps=4, extra=()):
    return load_config(method, "smoke", TINY + [f"train.max_steps={steps}", *extra])


def test_configs_resolve_with_inheritance_and_reject_unknown_keys():
    crw = load_config("crw")
    assert crw["loss"]["temperature"] == 0.05 and crw["loss"]["edge_dropout"] == 0.1
    assert crw["data"]["clip_len"] == 4 and crw["train"]["batch_size"] == 20 and crw["optim"]["lr"] == 1e-4
    jstg = load_config("jstg", "cpu")
    assert jstg["method"] == "jstg" and jstg["loss"]["reduction"] == "sum"
    assert jstg["schedule"]["stages"][1]["node_dropout_threshold"] == 0.2
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(crw, ["tarin.lr=1"])
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(crw, ["seeed=1"])
    assert apply_overrides(crw, ["loss.temperature=0.07"])["loss"]["temperature"] == 0.07
    assert "max_seconds" not in crw["train"]          # a trainer key the file leaves unset can be given
    assert apply_overrides(crw, ["train.max_seconds=60"])["train"]["max_seconds"] == 60
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(crw, ["train.max_second=60"])
    with pytest.raises(ConfigError):
        load_config("crw", "no-such-config")


def test_every_shipped_config_resolves_for_a_registered_method_and_augmentation(tmp_path):
    from pathlib import Path
    from train.augment import PIPELINES
    from train.methods import get_method
    from train.schedule import lr_factor
    files = sorted((Path(__file__).resolve().parents[1] / "train" / "configs").glob("*.json"))
    checked = 0
    for f in files:
        method = f.stem.split("-")[0]
        if method == "adapt":
            continue
        cfg = load_config(method, f.stem if "-" in f.stem else None)
        assert get_method(cfg["method"]).name == method, f.name
        assert cfg["augment"]["name"] in PIPELINES, f.name
        factor = lr_factor(cfg["schedule"], cfg["optim"]["lr"], steps_per_epoch=100, max_steps=1000)
        assert cfg["train"]["batch_size"] >= 1 and all(factor(s) >= 0 for s in (0, 500, 999)), f.name
        checked += 1
    assert checked >= 25
    for typo in ({"trian": {}}, {"train": {"max_second": 60}}, {"eval": {"scael": 0.5}}):
        bad = tmp_path / "typo.json"
        bad.write_text(json.dumps({"extends": "crw", **typo}))
        with pytest.raises(ConfigError, match="unknown key"):
            load_config("crw", str(bad))


def test_run_folder_checkpoints_open_in_the_engine(clips, tmp_path):
    out = tmp_path / "run"
    last = Trainer(tiny(steps=3), clips, out, quiet=True).run()
    names = sorted(p.name for p in out.iterdir())
    assert {"checkpoint_last.pt", "checkpoint_0000000.pt", "checkpoint_0000002.pt", "checkpoint_0000003.pt",
            "config.json", "metrics.jsonl"} <= set(names)
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all({"loss", "lr", "clips_per_s", "walk_accuracy"} <= set(r) for r in rows)
    assert json.loads((out / "config.json").read_text())["resolved"]["max_steps"] == 3
    ck = read_checkpoint(out / "checkpoint_last.pt")       # torch.load(weights_only=True) inside
    assert ck["method"] == "crw" and ck["step"] == 3 and ck["data"]["sources"] == 2
    assert ck["metrics"]["loss"] == pytest.approx(last["loss"])
    enc = load_encoder(checkpoint=out / "checkpoint_last.pt")
    assert enc.spec.name == "crw-r18-s8"
    x = enc.preprocess(torch.zeros(1, 64, 64, 3, dtype=torch.uint8))
    assert enc(x).shape == (1, 256, 8, 8)
    # The weights really are the trained ones (not a fresh init).
    init = load_encoder(checkpoint=out / "checkpoint_0000000.pt")
    assert not torch.equal(init.trunk.conv1.weight, enc.trunk.conv1.weight)


def test_affinity_propagate_opens_a_trained_checkpoint(clips, tmp_path):
    from engine.cli import propagate
    from engine.labels import write_mask

    out = tmp_path / "run"
    Trainer(tiny(steps=1), clips, out, quiet=True).run()
    mask = np.zeros((64, 96), np.uint8)
    mask[20:40, 30:60] = 1
    write_mask(tmp_path / "m.png", mask)
    rc = propagate.main([str(clips / "a.mp4"), "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "pred"),
                         "--checkpoint", str(out / "checkpoint_last.pt"), "--stop", "4", "--device", "cpu"])
    assert rc == 0 and len(list((tmp_path / "pred").glob("*.png"))) == 4


@pytest.mark.parametrize("method", ["crw", "jstg"])
def test_resume_continues_exactly(clips, tmp_path, method):
    n = 2 if method == "crw" else 4            # N steps straight vs N/2 + resume + N/2
    extra = [f"train.ckpt_every={n // 2}", "train.save_initial=false"]
    if method == "jstg":   # cross the stage boundary (node dropout on) after the resume point
        extra += ['schedule.stages=[{"steps": 3, "lr": 0.0001, "node_dropout": false}, '
                  '{"steps": 1, "lr": 0.00001, "node_dropout": true, "node_dropout_threshold": 0.05}]',
                  "loss.edge_dropout=0.1"]
    straight = tmp_path / "straight"
    Trainer(tiny(method, n, extra), clips, straight, quiet=True).run()
    split = tmp_path / "split"
    Trainer(tiny(method, n // 2, extra), clips, split, quiet=True).run()     # "interrupted" half-way
    Trainer(tiny(method, n, extra), clips, split, quiet=True).run()          # resumes from checkpoint_last.pt
    a = read_checkpoint(straight / "checkpoint_last.pt")["train_state"]
    b = read_checkpoint(split / "checkpoint_last.pt")["train_state"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for i, st in a["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg"], b["optimizer"]["state"][i]["exp_avg"])
    la = [json.loads(x)["loss"] for x in (straight / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (split / "metrics.jsonl").read_text().splitlines()]
    assert la == lb and len(la) == n


def test_bf16_autocast_grad_clipping_and_accumulation_run(clips, tmp_path):
    cfg = tiny("jstg", 2, ["train.precision=bf16", "optim.grad_clip=1.0", "optim.name=adamw",
                           "optim.weight_decay=0.01", "train.accumulate=2"])
    last = Trainer(cfg, clips, tmp_path / "run", quiet=True).run()
    assert np.isfinite(last["loss"]) and last["grad_norm"] > 0


def test_cli_trains_and_reports_bad_input(clips, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["--method", "crw", "--data", str(clips), "--out", str(out), "--config", "smoke",
                   "--max-steps", "1", *TINY])
    assert rc == 0 and (out / "checkpoint_last.pt").exists()
    assert cli.main(["--method", "crw", "--data", str(tmp_path / "none"), "--out", str(out / "x"),
                     "--config", "smoke"]) == 2
    assert cli.main(["--method", "crw", "--data", str(clips), "--out", str(out / "y"), "bogus.key=1"]) == 2
    assert "error:" in capsys.readouterr().err
    assert cli.main(["--method", "crw", "--data", str(clips), "--out", str(out / "z"), "--config", "smoke",
                     "--max-seconds", "5", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["max_seconds"] == 5.0


def test_periodic_evaluation_goes_through_engine_evaluate(clips, tmp_path):
    from engine.labels import write_mask
    from tests.videos import pattern
    import cv2

    val = tmp_path / "davis"
    (val / "seq" / "JPEGImages").mkdir(parents=True)
    (val / "seq" / "Annotations").mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(val / "seq" / "JPEGImages" / f"{i:05d}.jpg"), pattern(i)[:, :, ::-1])
        m = np.zeros((64, 96), np.uint8)
        m[16:48, 20 + i:60 + i] = 1
        write_mask(val / "seq" / "Annotations" / f"{i:05d}.png", m)
    cfg = tiny(steps=2, extra=["train.eval_every=2", 'eval.sequences=["seq"]', "eval.frames=null"])
    Trainer(cfg, clips, tmp_path / "run", val=val, quiet=True).run()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ev = [r for r in rows if r.get("kind") == "eval"]
    assert len(ev) == 1 and ev[0]["step"] == 2 and 0 <= ev[0]["J&F-Mean"] <= 1
    assert (tmp_path / "run" / "eval" / "step_0000002" / "results.json").exists()


@pytest.mark.slow
def test_torchrun_two_gloo_processes_equal_one_process_with_accumulation(clips, tmp_path):
    """DDP's batch split: 2 processes == 1 process in 2 micro-batches (same BN groups), exactly up to
    float summation order; the 1-process full-batch curve differs only through BN statistics."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_ddp_check.py"
    res = subprocess.run([sys.executable, str(script), "--data", str(clips), "--out", str(tmp_path), "--steps", "3",
                          "--batch", "4"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 3
    assert summary["max_abs_loss_diff_2proc_vs_accum2"] < 1e-5
    assert summary["max_abs_param_diff_2proc_vs_accum2"] < 1e-5


def test_engine_save_checkpoint_extra_fields(tmp_path):
    """The engine addition the trainer relies on: extra top-level fields, plain values only, no clash."""
    from engine.models import random_encoder
    from engine.models.checkpoints import save_checkpoint

    enc = random_encoder("crw-r18-s8")
    save_checkpoint(tmp_path / "a.pt", enc, "crw", extra={"train_state": {"step": 3, "t": torch.ones(2)}})
    ck = read_checkpoint(tmp_path / "a.pt")
    assert ck["train_state"]["step"] == 3 and torch.equal(ck["train_state"]["t"], torch.ones(2))
    assert torch.equal(load_encoder(checkpoint=tmp_path / "a.pt").trunk.conv1.weight, enc.trunk.conv1.weight)
    with pytest.raises(ConfigError, match="clashes"):
        save_checkpoint(tmp_path / "b.pt", enc, "crw", extra={"step": 1})
    with pytest.raises(ConfigError):
        save_checkpoint(tmp_path / "c.pt", enc, "crw", extra={"x": object()})
    assert not (tmp_path / "b.pt").exists() and not (tmp_path / "c.pt").exists()


def test_wall_clock_budget_ends_the_run_and_moves_the_stages_by_time(clips, tmp_path):
    cfg = tiny("jstg", steps=100000)
    cfg["schedule"]["stages"] = [{"steps": 50000, "lr": 1e-4, "node_dropout": False},
                                 {"steps": 50000, "lr": 1e-5, "node_dropout": True}]
    cfg["train"]["max_seconds"] = 6.0
    out = tmp_path / "timed"
    last = Trainer(cfg, clips, out, quiet=True).run()
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert 2 <= last["step"] < 100000                     # stopped by the budget, not the steps
    assert rows[0]["lr"] == pytest.approx(1e-4) and rows[-1]["lr"] == pytest.approx(1e-5)
    assert rows[0]["stage"] == 0 and rows[-1]["stage"] == 1
    assert rows[-1]["peak_rss_mb"] > 50
    assert read_checkpoint(out / "checkpoint_last.pt")["step"] == last["step"]
