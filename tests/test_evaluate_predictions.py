"""engine.evaluate.evaluate_davis_predictions against the official evaluator's golden output."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from engine.errors import EvaluationError
from engine.evaluate import DAVIS_GLOBAL_COLUMNS, evaluate_davis_predictions
from engine.labels import write_mask

TOL = 1e-6


@pytest.fixture(scope="module")
def golden(shared):
    root = shared / "golden" / "davis_metrics"
    return root, json.loads((root / "expected.json").read_text())


def _close(a, b):
    return np.max(np.abs(np.asarray(a, float) - np.asarray(b, float)), initial=0.0) <= TOL


def _check_set(report, exp):
    js = report.to_json_dict()
    assert js["sequence_order"] == exp["sequence_order"]
    for seq, e in exp["sequences"].items():
        got = js["sequences"][seq]
        for key in ("shape_hw", "frame_ids_all", "frame_ids_evaluated", "n_objects",
                    "max_pred_id_in_evaluated_frames", "bound_pix"):
            assert got[key] == e[key], (seq, key)
        assert sorted(got["objects"]) == sorted(e["objects"])
        for k, eo in e["objects"].items():
            for key, val in eo.items():
                assert _close(got["objects"][k][key], val), (seq, k, key, got["objects"][k][key], val)
    assert list(js["global"]) == list(DAVIS_GLOBAL_COLUMNS)
    for col, val in exp["global"].items():
        assert _close(js["global"][col], val), (col, js["global"][col], val)
    assert [r["Sequence"] for r in js["per_object"]] == [r["Sequence"] for r in exp["per_object_table"]]
    for a, b in zip(js["per_object"], exp["per_object_table"]):
        assert _close(a["J-Mean"], b["J-Mean"]) and _close(a["F-Mean"], b["F-Mean"]), a["Sequence"]


@pytest.mark.parametrize("name", ["synthetic", "real"])
def test_golden_sets(golden, name):
    root, exp = golden
    s = exp["sets"][name]
    report = evaluate_davis_predictions(root / s["pred_dir"], root / s["gt_dir"])
    _check_set(report, s)


def test_single_worker_gives_the_same_numbers(golden):
    root, exp = golden
    s = exp["sets"]["synthetic"]
    report = evaluate_davis_predictions(root / s["pred_dir"], root / s["gt_dir"], workers=1)
    _check_set(report, s)


def test_davis2016_layout_255_is_object_one(golden, shared):
    # gt_real was made from these DAVIS-2016 0/255 files; read in place they must score the same.
    root, exp = golden
    d16 = shared / "data" / "davis2016"
    if not (d16 / "blackswan" / "Annotations").is_dir():
        pytest.skip("davis2016 data not present")
    s = exp["sets"]["real"]
    report = evaluate_davis_predictions(root / s["pred_dir"], d16, sequences=s["sequence_order"])
    _check_set(report, s)


@pytest.mark.parametrize("seq", ["extra_id", "void_in_pred"])
def test_error_cases_raise(golden, seq):
    root, exp = golden
    ec = exp["error_cases"]
    assert ec["sequences"][seq]["official_outcome"] == "abort"
    with pytest.raises(EvaluationError) as info:
        evaluate_davis_predictions(root / ec["pred_dir"], root / ec["gt_dir"], sequences=[seq])
    msg = str(info.value)
    assert seq in msg and ".png" in msg and "object id" in msg
    want = "255" if seq == "void_in_pred" else "3"
    assert f"object id {want}" in msg


def _copy_set(golden, tmp_path, seqs):
    root, _ = golden
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for s in seqs:
        shutil.copytree(root / "gt_multiobj" / s, gt / s)
        shutil.copytree(root / "pred_multiobj" / s, pred / s)
    return gt, pred


def test_missing_prediction_file_is_named(golden, tmp_path):
    gt, pred = _copy_set(golden, tmp_path, ["blobs3"])
    (pred / "blobs3" / "00004.png").unlink()
    with pytest.raises(EvaluationError) as info:
        evaluate_davis_predictions(pred, gt)
    assert info.value.path.endswith("00004.png") and "missing" in info.value.reason


def test_first_and_last_prediction_never_opened_and_sorted_order(golden, tmp_path):
    root, exp = golden
    gt, pred = _copy_set(golden, tmp_path, ["short3", "blobs3"])
    for s in ("short3", "blobs3"):
        frames = sorted((pred / s).glob("*.png"))
        frames[0].unlink()
        frames[-1].write_bytes(b"not a png")
    report = evaluate_davis_predictions(pred, gt)       # no sequences.txt: sorted folder names
    js = report.to_json_dict()
    assert js["sequence_order"] == ["blobs3", "short3"]
    e = exp["sets"]["synthetic"]["sequences"]["short3"]["objects"]
    assert _close(js["sequences"]["short3"]["objects"]["2"]["J"], e["2"]["J"])
    only = evaluate_davis_predictions(pred, gt, sequences=["short3"])
    assert [s.name for s in only.sequences] == ["short3"]


def test_unknown_sequence_and_short_sequence(golden, tmp_path):
    gt, pred = _copy_set(golden, tmp_path, ["short3"])
    with pytest.raises(EvaluationError):
        evaluate_davis_predictions(pred, gt, sequences=["nope"])
    (gt / "short3" / "00002.png").unlink()
    with pytest.raises(EvaluationError, match="at least 3"):
        evaluate_davis_predictions(pred, gt)


def test_greyscale_0_255_folder_with_sequences_json(tmp_path):
    # DAVIS-2016 layout built from scratch: <seq>/Annotations/*.png as 0/255 greyscale, order from
    # sequences.json; predictions as palette id 1.
    gt, pred = tmp_path / "d16", tmp_path / "pred"
    for seq, shift in (("b", 0), ("a", 3)):
        (gt / seq / "Annotations").mkdir(parents=True)
        for t in range(5):
            m = np.zeros((48, 64), np.uint8)
            m[10:30, 10:40] = 255
            Image.fromarray(m, mode="L").save(gt / seq / "Annotations" / f"{t:05d}.png")
            p = np.zeros((48, 64), np.uint8)
            p[10 + shift:30 + shift, 10:40] = 1
            write_mask(pred / seq / f"{t:05d}.png", p)
    (gt / "sequences.json").write_text(json.dumps({"val": ["b", "a"]}))
    report = evaluate_davis_predictions(pred, gt)
    assert [s.name for s in report.sequences] == ["b", "a"]
    b, a = report.sequences
    assert b.n_objects == 1 and b.objects[1].J == [1.0, 1.0, 1.0]
    assert a.objects[1].J == pytest.approx([17 * 30 / (23 * 30)] * 3)


def test_report_json_markdown_and_write(golden, tmp_path):
    root, exp = golden
    s = exp["sets"]["synthetic"]
    report = evaluate_davis_predictions(root / s["pred_dir"], root / s["gt_dir"], sequences=["missing_obj4", "short3"])
    js = report.to_json_dict()
    assert set(js) >= {"global", "per_object", "sequences"}
    obj4 = js["sequences"]["missing_obj4"]["objects"]["4"]     # K = 3 < N = 4: empty prediction
    assert obj4["J-Mean"] == 0.0 and js["sequences"]["missing_obj4"]["max_pred_id_in_evaluated_frames"] == 3
    md = report.to_markdown()
    assert "| J&F-Mean | J-Mean |" in md and "missing_obj4_4 | 0.000 | 0.000" in md
    assert f"{js['global']['J-Mean']:.3f}" in md
    jpath, mpath = report.write(tmp_path / "out")
    assert json.loads(jpath.read_text()) == json.loads(json.dumps(js))
    assert mpath.read_text() == md
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.json", "results.md"]
