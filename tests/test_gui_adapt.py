"""Adapt the model to this video from the GUI (pytest-qt, offscreen): progress, cancel, adapt again,
frames of the earlier model marked and re-propagated, propagate with the adapted model, save,
reopen with the adapted model in use."""
import pytest
import torch

pytest.importorskip("pytestqt")

from engine.errors import CheckpointError  # noqa: E402
from engine.labels import read_mask  # noqa: E402
from engine.models.checkpoints import read_checkpoint  # noqa: E402

from annotator.document import DEMO_DIR  # noqa: E402
from tests.test_gui_app import WAIT_MS, close, make_window, wait_idle  # noqa: E402


def wait_adapted(qtbot, w):
    qtbot.waitUntil(lambda: not w.adaptation.busy, timeout=WAIT_MS)


def test_adapt_from_the_gui_cancel_adapt_again_propagate_save_reopen(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, adapt__seconds=600.0)   # long: the first run is cancelled
    w.open_demo()
    s = w.doc.session
    s.set_keyframe(6, read_mask(DEMO_DIR / "demo_masks" / "00006.png", size=s.size))   # a short segment 1..5
    assert w.propagation.models.tag() == "bundled default"
    assert w.propagate("forward")
    wait_idle(qtbot, w)
    assert [s.provenance(i).model for i in range(1, 6)] == ["bundled default"] * 5

    # adapt, see progress, cancel: the bundled model stays in use and nothing is written
    steps = []
    w.adaptation.progress.connect(lambda step, loss, elapsed, budget: steps.append((step, loss, budget)))
    assert w.adapt_model()
    assert w.progress.isVisible() and w.cancel_button.isVisible()
    qtbot.waitUntil(lambda: len(steps) > 0, timeout=WAIT_MS)
    assert steps[0][2] == 600.0 and "left" in w.progress.format()
    w.cancel_button.click()
    wait_adapted(qtbot, w)
    assert "cancelled" in w.message.text() and "previous model stays in use" in w.message.text()
    assert w.doc.model_path() is None and w.propagation.models.tag() == "bundled default"
    assert not w.timeline.older_model_frames().any()

    # adapt again, to the end of a 5 s budget
    w.settings.set("adapt/seconds", 5.0)
    assert w.adapt_model()
    wait_adapted(qtbot, w)
    res = w.adaptation.last_result
    assert not res.cancelled and res.steps >= 1 and res.loss_after < res.loss_before
    adapted = w.doc.model_path()
    assert adapted is not None and adapted.is_file() and w.doc.dirty
    tag = w.propagation.models.tag()
    assert tag == adapted.name and w.timeline.current_model == tag
    assert "Adapted the model" in w.message.text()
    # frames propagated before adaptation are marked, and re-propagated on request with the new model
    assert w.timeline.older_model_frames()[1:6].all()
    assert w.repropagate_outdated()
    wait_idle(qtbot, w)
    assert [s.provenance(i).model for i in range(1, 6)] == [tag] * 5
    assert not w.timeline.older_model_frames().any()
    # and new propagation uses it
    w.go_to(6)
    w.propagation.propagate(6, "forward", "mask", extent="next_keyframe")
    qtbot.waitUntil(lambda: s.provenance(7).kind == "propagated", timeout=WAIT_MS)
    w.propagation.cancel()
    wait_idle(qtbot, w)
    assert s.provenance(7).model == tag

    # save: the adapted checkpoint goes into the project; reopen with it in use
    proj = tmp_path / "proj"
    assert w._save_to(proj)
    kept = proj / "models" / adapted.name
    assert kept.is_file() and read_checkpoint(kept)["metrics"]["adapt"]["steps"] == res.steps
    assert s.settings["model"] == f"models/{adapted.name}"
    close(w)

    w2 = make_window(qtbot, tmp_path / "second")
    assert w2.open_path(proj, ask=False)
    assert w2.doc.model_path() == kept and w2.propagation.models.tag() == tag
    assert w2.doc.session.provenance(3).model == tag and w2.timeline.current_model == tag
    propagator, note, used = w2.propagation.models()
    weights = read_checkpoint(kept)["state_dict"]["layer3.1.conv2.weight"]
    assert used == tag and torch.equal(propagator.extractor.encoder.trunk.state_dict()["layer3.1.conv2.weight"].cpu(),
                                       weights)
    # back to the app's model: the earlier frames are now from another model
    w2.use_app_model()
    assert w2.propagation.models.tag() == "bundled default" and w2.timeline.older_model_frames()[1:6].all()
    close(w2)


def test_a_missing_project_model_is_reported_and_the_session_survives(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path)
    w.open_demo()
    w.doc.set_model(tmp_path / "gone.pt")
    with pytest.raises(CheckpointError, match="gone.pt"):
        w.propagation.models()
    w.propagation.propagate(0, "forward", "mask")
    wait_idle(qtbot, w)
    assert any("gone.pt" in text for _, text in w.errors.history)
    close(w)
