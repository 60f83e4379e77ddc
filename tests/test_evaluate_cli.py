"""affinity-evaluate (engine.cli.evaluate) and the dataset runners behind it (engine.evaluate)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import evaluate as ev
from engine.cli.evaluate import main
from engine.evaluate import DAVIS_GLOBAL_COLUMNS
from engine.labels import write_mask

TOL = 1e-6


@pytest.fixture(scope="module")
def golden(shared):
    root = shared / "golden" / "davis_metrics"
    return root, json.loads((root / "expected.json").read_text())


@pytest.fixture(scope="module")
def davis16(shared):
    d = shared / "data" / "davis2016"
    if not (d / "blackswan" / "JPEGImages").is_dir():
        pytest.skip("davis2016 data not present")
    return d


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# ---------------------------------------------------------------------------------------------
# --predictions mode
# ---------------------------------------------------------------------------------------------

def test_predictions_mode_reproduces_the_official_global_table(golden, tmp_path, capsys):
    root, exp = golden
    real = exp["sets"]["real"]
    out, js = tmp_path / "out", tmp_path / "r.json"
    rc = main(["--predictions", str(root / real["pred_dir"]), "--ground-truth", str(root / real["gt_dir"]),
               "--json", str(js), "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out.splitlines()
    doc = json.loads(js.read_text())
    assert list(doc["global"]) == list(DAVIS_GLOBAL_COLUMNS)
    for col, val in real["global"].items():
        assert abs(doc["global"][col] - val) <= TOL, (col, doc["global"][col], val)
    # The printed table carries the official column names and the official 3-decimal values.
    head = printed.index(next(ln for ln in printed if ln.split()[:1] == ["J&F-Mean"]))
    assert printed[head].split() == list(DAVIS_GLOBAL_COLUMNS)
    assert printed[head + 1].split() == [f"{real['global'][c]:.3f}" for c in DAVIS_GLOBAL_COLUMNS]
    for row in real["per_object_table"]:
        line = next(ln for ln in printed if ln.startswith(row["Sequence"] + " "))
        assert line.split()[2:4] == [f"{row['J-Mean']:.3f}", f"{row['F-Mean']:.3f}"]
    assert json.loads((out / "results.json").read_text())["global"] == doc["global"]
    assert (out / "results.md").read_text().startswith("# DAVIS evaluation")


def test_missing_folder_exits_2_with_one_line(golden, tmp_path, capsys):
    root, _ = golden
    rc = main(["--predictions", str(tmp_path / "nope"), "--ground-truth", str(root / "gt_real")])
    assert rc == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "nope" in line and "does not exist" in line


def test_extra_object_id_exits_2_and_writes_nothing(golden, tmp_path, capsys):
    root, exp = golden
    ec = exp["error_cases"]
    out, js = tmp_path / "out", tmp_path / "r.json"
    rc = main(["--predictions", str(root / ec["pred_dir"]), "--ground-truth", str(root / ec["gt_dir"]),
               "--sequences", "extra_id", "--out", str(out), "--json", str(js)])
    assert rc == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "extra_id" in line and "object id" in line
    assert not out.exists() and not js.exists()


@pytest.mark.parametrize("argv, words", [
    ([], "exactly one of"),
    (["--predictions", "p"], "--ground-truth"),
    (["--predictions", "p", "--ground-truth", "g", "--random-init"], "does not apply"),
    (["some_dataset"], "--out"),
    (["some_dataset", "--out", "o", "--frames", "2", "--random-init"], "at least 3"),
])
def test_usage_errors_exit_2(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if argv and argv[0] == "some_dataset":
        (tmp_path / "some_dataset").mkdir()
    assert main(argv) == 2
    assert words in _one_line_error(capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------
# DATASET_DIR mode on real DAVIS-2016 frames
# ---------------------------------------------------------------------------------------------

def test_dataset_run_end_to_end(davis16, tmp_path, capsys):
    seqs = ["blackswan", "car-shadow"]
    out, js = tmp_path / "results", tmp_path / "r.json"
    rc = main([str(davis16), "--random-init", "--sequences", ",".join(seqs), "--frames", "6", "--scale", "0.5",
               "--out", str(out), "--json", str(js)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "J&F-Mean" in printed and "blackswan_1" in printed and "car-shadow_1" in printed
    doc = json.loads((out / "results.json").read_text())
    assert doc == json.loads(js.read_text())
    assert list(doc["global"]) == list(DAVIS_GLOBAL_COLUMNS)
    for col, v in doc["global"].items():
        lo = -1.0 if col.endswith("Decay") else 0.0
        assert lo <= v <= 1.0, (col, v)
    assert doc["sequence_order"] == seqs
    names = [f"{i:05d}" for i in range(6)]
    for s in seqs:
        e = doc["sequences"][s]
        assert e["frame_ids_all"] == names and e["frame_ids_evaluated"] == names[1:-1]
        o = e["objects"]["1"]
        assert all(0.0 <= x <= 1.0 for x in o["J"] + o["F"])
        assert 0.0 <= e["mean"]["J&F-Mean"] <= 1.0
        assert sorted(p.stem for p in (out / "predictions" / s).glob("*.png")) == names
        with Image.open(out / "predictions" / s / "00003.png") as im:
            assert im.mode == "P" and im.size == (854, 480)
        t = doc["propagation"]["sequences"][s]
        assert t["frames"] == 6 and t["frames_per_s"] > 0
    assert doc["propagation"]["frames_limit"] == 6 and doc["propagation"]["params"]["scale"] == 0.5
    assert "Propagation" in (out / "results.md").read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no staging left


@pytest.mark.slow
def test_dataset_full_sequence(davis16, shared, tmp_path):
    """One whole sequence at the protocol's native resolution with the golden weights (minutes on a CPU)."""
    from engine.models import load_encoder
    enc = load_encoder(checkpoint=shared / "golden" / "crw_propagation" / "encoder_seed0.pt", model="crw-r18-s8")
    report = ev.evaluate_davis_dataset(davis16, enc, out_dir=tmp_path / "r", sequences=["car-shadow"])
    (s,) = report.sequences
    assert len(s.frame_ids_evaluated) == 38
    assert 0.0 <= report.global_table()["J&F-Mean"] <= 1.0
    assert len(list((tmp_path / "r" / "predictions" / "car-shadow").glob("*.png"))) == 40


# ---------------------------------------------------------------------------------------------
# DATASET_DIR mode on tiny synthetic folders: checks and all-or-nothing output
# ---------------------------------------------------------------------------------------------

def _tiny_davis(root: Path, name: str, n: int = 5, size=(64, 48), key_mask: bool = True) -> None:
    w, h = size
    rng = np.random.default_rng(0)
    (root / name / "JPEGImages").mkdir(parents=True)
    (root / name / "Annotations").mkdir(parents=True)
    tex = rng.integers(0, 256, (h, w, 3), np.uint8)
    for i in range(n):
        Image.fromarray(np.roll(tex, i, axis=1)).save(root / name / "JPEGImages" / f"{i:05d}.png")
        m = np.zeros((h, w), np.uint8)
        m[10:30, 15 + i:40 + i] = 1
        if i or key_mask:
            write_mask(root / name / "Annotations" / f"{i:05d}.png", m)


def test_dataset_checks_every_sequence_before_propagating(tmp_path, capsys):
    data = tmp_path / "data"
    _tiny_davis(data, "good")
    _tiny_davis(data, "nokey", key_mask=False)
    out = tmp_path / "out"
    rc = main([str(data), "--random-init", "--out", str(out)])
    assert rc == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "nokey" in line and "no annotation" in line
    assert not out.exists()


def test_failed_run_keeps_the_previous_results(tmp_path, monkeypatch):
    data = tmp_path / "data"
    _tiny_davis(data, "a")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")

    def boom(*a, **k):
        raise ev.EvaluationError(None, "scorer failed")
    monkeypatch.setattr(ev, "evaluate_davis_predictions", boom)
    from engine.models import random_encoder
    with pytest.raises(ev.EvaluationError):
        ev.evaluate_davis_dataset(data, random_encoder(), out_dir=out)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_frame_limit_scores_the_cut_sequence_only(tmp_path):
    from engine.models import random_encoder
    data = tmp_path / "data"
    _tiny_davis(data, "a", n=7)
    events = []
    report = ev.evaluate_davis_dataset(data, random_encoder(), out_dir=tmp_path / "o", frames=4,
                                       progress=lambda *a: events.append(a))
    (s,) = report.sequences
    assert s.frame_ids_all == ["00000", "00001", "00002", "00003"]
    assert s.frame_ids_evaluated == ["00001", "00002"]
    assert sorted(p.name for p in (tmp_path / "o" / "predictions" / "a").iterdir()) == \
        [f"{i:05d}.png" for i in range(4)]
    assert ("propagate", "a", 4, 4) in events and ("score", "a", 0, 1) in events
    # The dataset itself is what the report names, not the temporary view the scorer read.
    assert report.to_json_dict()["gt_dir"] == str(data)


# ---------------------------------------------------------------------------------------------
# BADJA keypoint mode (synthetic: fast, and a known answer)
# ---------------------------------------------------------------------------------------------

def _tiny_badja(root: Path) -> tuple[Path, Path]:
    """A static textured clip: every propagated joint must stay where it was given."""
    frames = root / "frames"
    w, h, n = 128, 96, 8
    rng = np.random.default_rng(1)
    tex = rng.integers(0, 256, (h, w, 3), np.uint8)
    (frames / "tex" / "JPEGImages").mkdir(parents=True)
    (frames / "tex" / "Annotations").mkdir(parents=True)
    mask = np.zeros((h, w), np.uint8)
    mask[8:88, 8:120] = 1
    for i in range(n):
        Image.fromarray(tex).save(frames / "tex" / "JPEGImages" / f"{i:05d}.png")
        write_mask(frames / "tex" / "Annotations" / f"{i:05d}.png", mask)
    # Annotations at half the frames' size, to exercise the rescaling to the frames.
    pts = [[20.0, 15.0], [40.0, 30.0], [0.0, 0.0], [50.0, 20.0]]
    seed_vis = [True, True, False, True]
    later_vis = [True, True, True, False]       # slot 2 appears later: not given, so not scored
    ann = [{"frame": 1, "keypoints_xy": pts, "visible": seed_vis}]
    ann += [{"frame": f, "keypoints_xy": [[20.0, 15.0], [40.0, 30.0], [30.0, 30.0], [0.0, 0.0]],
             "visible": later_vis} for f in (4, 6)]
    badja = root / "badja"
    (badja / "joint_annotations").mkdir(parents=True)
    (badja / "joint_annotations" / "elsewhere.json").write_text("[]")
    doc = {"image_size_wh": [64, 48], "sequences": {
        "tex": {"frames_source": "frames/tex", "annotations": ann},
        "noframes": {"frames_source": "nowhere", "annotations": ann}}}
    (badja / "joints_480p.json").write_text(json.dumps(doc))
    return badja, frames


def test_badja_static_clip_is_perfect(tmp_path):
    from engine.models import random_encoder
    from engine.propagate import PropagationParams
    badja, frames = _tiny_badja(tmp_path)
    out = tmp_path / "out"
    rep = ev.evaluate_badja(badja, frames, random_encoder(), PropagationParams(precision="fp32"), out_dir=out)
    (s,) = rep.sequences
    assert s.name == "tex" and s.frames == [1, 4, 6] and s.seeded == [0, 1, 3]
    assert (s.n_scored, s.n_unseeded) == (4, 2)          # slots 0, 1 on frames 4 and 6
    assert s.n_correct == 4 and rep.pck == 1.0
    assert s.n_propagated == 6                            # frames 1..6
    assert set(rep.skipped) == {"noframes", "elsewhere"}
    assert "no frames" in rep.skipped["noframes"]
    doc = json.loads((out / "results.json").read_text())
    assert doc["global"]["PCK@0.2"] == 1.0 and doc["global"]["n_scored"] == 4
    pred = json.loads((out / "predictions" / "tex.json").read_text())
    assert sorted(pred["frames"], key=int) == [str(i) for i in range(1, 7)]
    p6 = pred["frames"]["6"]["points"]
    assert p6[2] is None                                  # absent on the keyframe: stays absent
    assert math.dist(p6[0], [40.0, 30.0]) <= 0.2 * math.sqrt(80 * 112)


def test_badja_cli_and_nothing_to_evaluate(tmp_path, capsys):
    badja, frames = _tiny_badja(tmp_path)
    rc = main(["--badja", str(badja), "--frames-dir", str(frames), "--random-init", "--out", str(tmp_path / "o"),
               "--sequences", "tex", "--precision", "fp32"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "PCK@0.2: 1.000 (4/4 joints" in printed
    rc = main(["--badja", str(badja), "--frames-dir", str(frames), "--random-init", "--out", str(tmp_path / "o2"),
               "--sequences", "noframes"])
    assert rc == 2
    assert "no BADJA sequence can be evaluated" in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "o2").exists()


@pytest.mark.slow
def test_badja_real_sequence(shared, davis16, tmp_path):
    from engine.models import load_encoder
    from engine.propagate import PropagationParams
    enc = load_encoder(checkpoint=shared / "golden" / "crw_propagation" / "encoder_seed0.pt", model="crw-r18-s8")
    rep = ev.evaluate_badja(shared / "data" / "badja", davis16, enc, PropagationParams(scale=0.5),
                            out_dir=tmp_path / "o", sequences=["horsejump-high"])
    (s,) = rep.sequences
    assert s.n_scored > 100 and 0.0 <= rep.pck <= 1.0
