"""The bundled default model (resources/models/default.pt): what ships, and that every client uses it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import protocols
from engine.cli import demo, propagate
from engine.models import default_checkpoint_path, load_encoder, random_encoder, read_checkpoint
from engine.models.checkpoints import FORMAT

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "resources" / "models" / "default.pt"
DEMO = REPO / "resources" / "demo"


def test_default_path_is_the_bundled_file():
    assert default_checkpoint_path().resolve() == DEFAULT.resolve()
    assert DEFAULT.is_file() and (DEFAULT.parent / "MODEL_CARD.md").is_file()


def test_bundled_default_is_a_small_fp16_inference_checkpoint():
    raw = read_checkpoint(DEFAULT)
    assert raw["format"] == FORMAT and raw["precision"] == "fp16"
    sd = raw["state_dict"]
    # weights in half precision; BatchNorm running statistics stay float32 (docs/CHECKPOINTS.md)
    weights = [v for k, v in sd.items() if v.is_floating_point() and "running_" not in k]
    assert weights and all(v.dtype == torch.float16 for v in weights)
    assert not any(k.startswith(("layer4", "fc", "selfsim")) for k in sd)   # training-only parts dropped
    assert DEFAULT.stat().st_size < 8 * 2 ** 20
    card = raw["card"]
    assert card["method"] == "crw" and card["step"] > 0 and card["train_minutes"] > 0
    assert 0 < card["metrics"]["davis2016_val"]["J&F-Mean"] < 1
    assert 0 < card["metrics"]["badja"]["PCK@0.2"] <= 1


def test_card_markdown_states_the_measured_numbers():
    card = read_checkpoint(DEFAULT)["card"]
    text = (DEFAULT.parent / "MODEL_CARD.md").read_text()
    assert f"{card['metrics']['davis2016_val']['J&F-Mean']:.3f}" in text
    assert f"{card['metrics']['badja']['PCK@0.2']:.3f}" in text
    assert "random init" in text and "optical flow" in text.lower()   # the baselines are in the table


def test_default_spec_carries_the_tuned_protocol():
    card = read_checkpoint(DEFAULT)["card"]
    proto = protocols.from_spec(load_encoder().spec)
    tuned = card["protocol"]
    assert proto.topk == tuned["topk"] and proto.context == tuned["context"]
    assert proto.radius == pytest.approx(tuned["radius"]) and proto.temperature == pytest.approx(tuned["temperature"])


def test_default_weights_are_the_trained_ones_not_a_random_init():
    trained = load_encoder().trunk.state_dict()
    rand = random_encoder("crw-r18-s8").trunk.state_dict()
    assert trained.keys() == rand.keys()
    k = "layer3.1.conv2.weight"
    assert trained[k].dtype == torch.float32                       # upcast on load
    assert not torch.allclose(trained[k], rand[k], atol=1e-3)


def test_propagate_cli_uses_the_default_without_model_options(tmp_path):
    rc = propagate.main([str(DEMO / "demo.mp4"), "--mask", str(DEMO / "demo_mask_00000.png"), "--out",
                         str(tmp_path / "m"), "--stop", "4", "--scale", "0.25", "--json", str(tmp_path / "s.json")])
    assert rc == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert Path(summary["checkpoint"]).resolve() == DEFAULT.resolve()
    assert len(list((tmp_path / "m").glob("*.png"))) == 4


def _demo_j(tmp_path, name, *extra) -> float:
    out = tmp_path / name
    assert demo.main(["--frames", "30", "--scale", "0.5", "--out", str(out), "--json", str(out) + ".json",
                      *extra]) == 0
    return json.loads(Path(str(out) + ".json").read_text())["J-Mean"]


def test_default_tracks_the_demo_objects_better_than_its_random_init(tmp_path):
    trained = _demo_j(tmp_path, "trained")
    untrained = _demo_j(tmp_path, "random", "--random-init")
    assert trained > 0.8
    assert trained >= untrained - 0.01, (trained, untrained)


def test_the_app_propagates_the_demo_with_the_default(qtbot, tmp_path):
    """A fresh install (no checkpoint in the settings): the app opens the demo and propagates it with
    the bundled model, with no 'random weights' warning."""
    pytest.importorskip("pytestqt")
    from engine.labels import read_mask
    from engine.metrics import db_eval_iou
    from tests.test_gui_app import make_window, wait_idle

    w = make_window(qtbot, tmp_path, scale=0.5)
    assert w.settings.get("model/checkpoint") == ""
    w.open_demo()
    s = w.doc.session
    assert s.keyframes("mask") == [0]
    assert w.propagate("forward")
    qtbot.waitUntil(lambda: s.provenance(8, "mask").kind == "propagated", timeout=90_000)
    w.cancel_propagation()
    wait_idle(qtbot, w)
    propagator, note, _ = w.propagation.models()
    assert note == "" and w.model_note.text() == ""
    assert "fp16" in propagator.extractor.encoder.source          # the shipped half-precision file
    gt = read_mask(DEMO / "demo_masks" / "00008.png")
    ious = [db_eval_iou(gt == o, s.label(8) == o) for o in (1, 2, 3)]
    assert min(ious) > 0.6, ious
