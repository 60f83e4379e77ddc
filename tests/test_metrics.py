"""engine.metrics: DAVIS J/F/statistics against the official golden values, PCK and mIoU by hand."""
import json
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from engine import metrics as M

TOL = 1e-6


# ---------------------------------------------------------------------------------------------
# golden values (shared/golden/davis_metrics)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def golden(shared):
    root = shared / "golden" / "davis_metrics"
    return root, json.loads((root / "expected.json").read_text())


def _png(path):
    return np.array(Image.open(path))


def _pair_names(root):
    return (root / "pairs" / "pairs.txt").read_text().split()


def test_golden_pairs_j_f_internals(golden):
    root, exp = golden
    names = _pair_names(root)
    assert len(names) == len(exp["pairs"]) >= 30
    worst = 0.0
    for name in names:
        e = exp["pairs"][name]
        gt = _png(root / "pairs" / f"{name}_gt.png")
        pred = _png(root / "pairs" / f"{name}_pred.png")
        assert list(gt.shape) == e["shape_hw"]
        obj, void = gt == 1, gt == 255
        assert bool(void.any()) == e["has_void"], name
        got = {"J": M.db_eval_iou(obj, pred), "F": M.db_eval_boundary(obj, pred),
               "J_void": M.db_eval_iou(obj, pred, void), "F_void": M.db_eval_boundary(obj, pred, void)}
        for key, val in got.items():
            assert abs(val - e[key]) <= TOL, (name, key, val, e[key])
            worst = max(worst, abs(val - e[key]))
        for th, val in e["F_by_bound_th"].items():
            f = M.db_eval_boundary(obj, pred, bound_th=float(th))
            assert abs(f - val) <= TOL, (name, th, f, val)
        for key, v in (("internals", None), ("internals_void", void)):
            st = M.boundary_stats(obj, pred, v)
            for field, val in e[key].items():
                assert abs(getattr(st, field) - val) <= TOL, (name, key, field, getattr(st, field), val)
            assert abs(st.F - (got["F"] if v is None else got["F_void"])) == 0
    assert worst <= TOL


def test_golden_seg2bmap_maps(golden):
    root, exp = golden
    for name in _pair_names(root):
        gt = _png(root / "pairs" / f"{name}_gt.png")
        pred = _png(root / "pairs" / f"{name}_pred.png")
        for mask, which in ((gt == 1, "gt"), (pred, "pred")):
            want = _png(root / "pairs" / "bmap" / f"{name}_{which}_bmap.png").astype(bool)
            got = M.seg2bmap(mask)
            assert got.dtype == bool and np.array_equal(got, want), (name, which)


def test_golden_db_statistics(golden):
    _, exp = golden
    assert len(exp["db_statistics"]) >= 18
    for case in exp["db_statistics"]:
        v = case["values"]
        m, r, d = M.db_statistics(v)
        assert abs(m - case["M"]) <= TOL and abs(r - case["R"]) <= TOL and abs(d - case["D"]) <= TOL, len(v)
        edges = M.decay_bin_edges(len(v))
        assert edges.tolist() == case["bin_edges"]
        assert [[int(edges[i]), int(edges[i + 1]) + 1] for i in range(4)] == case["bins"]


def test_golden_disk_pixel_counts(golden):
    _, exp = golden
    for r, n in exp["disk_pixel_counts"].items():
        k = M.disk(int(r))
        assert k.shape == (2 * int(r) + 1,) * 2 and int(k.sum()) == n


def test_golden_radius_table(golden):
    _, exp = golden
    for s in list(exp["sets"]["synthetic"]["sequences"].values()) + list(exp["sets"]["real"]["sequences"].values()):
        assert M.boundary_radius(*s["shape_hw"]) == s["bound_pix"]
    for (h, w), r in {(75, 100): 1, (96, 160): 2, (120, 200): 2, (150, 200): 2, (151, 200): 3, (480, 854): 8}.items():
        assert M.boundary_radius(h, w) == r
    assert M.boundary_radius(480, 854, bound_th=3) == 3
    with pytest.raises(ValueError):
        M.boundary_radius(10, 10, bound_th=1.5)


# ---------------------------------------------------------------------------------------------
# spec §2.1 worked examples and properties
# ---------------------------------------------------------------------------------------------

def _box(y0, y1, x0, x1, shape=(480, 854)):
    m = np.zeros(shape, bool)
    m[y0:y1 + 1, x0:x1 + 1] = True
    return m


@pytest.mark.parametrize("dy,dx,j,f", [
    (0, 0, 1.0, 1.0),
    (5, 5, 0.920768, 1.0),       # inside the 8-px tolerance
    (20, 0, 0.818182, 0.394000),
])
def test_spec_shifted_box(dy, dx, j, f):
    gt = _box(100, 299, 200, 499)
    pred = _box(100 + dy, 299 + dy, 200 + dx, 499 + dx)
    assert M.db_eval_iou(gt, pred) == pytest.approx(j, abs=1e-6)
    assert M.db_eval_boundary(gt, pred) == pytest.approx(f, abs=1e-6)


def test_spec_empty_conventions():
    empty = np.zeros((480, 854), bool)
    box = _box(100, 299, 200, 499)
    assert M.db_eval_iou(empty, empty) == 1 and M.db_eval_boundary(empty, empty) == 1.0
    for a, b in ((box, empty), (empty, box)):
        assert M.db_eval_iou(a, b) == 0.0 and M.db_eval_boundary(a, b) == 0.0
    st = M.boundary_stats(box, empty)
    assert (st.precision, st.recall, st.F) == (1.0, 0.0, 0.0)
    st = M.boundary_stats(empty, box)
    assert (st.precision, st.recall) == (0.0, 1.0)


def test_spec_seg2bmap_4x5():
    m = np.zeros((4, 5), np.uint8)
    m[1:3, 1:4] = 1
    want = np.zeros((4, 5), bool)
    want[0, 0:4] = True
    want[1, [0, 3]] = True
    want[2, 0:4] = True
    assert np.array_equal(M.seg2bmap(m), want)


def test_seg2bmap_border_and_degenerate_shapes():
    assert not M.seg2bmap(np.ones((6, 7))).any()          # full frame: no boundary at all
    col = np.array([[0], [1], [1], [0]])
    assert M.seg2bmap(col)[:, 0].tolist() == [True, False, True, False]
    assert M.seg2bmap(np.ones((1, 1))).tolist() == [[False]]


def test_disk_is_not_opencv_ellipse():
    k = M.disk(8)
    assert int(k.sum()) == 197 and k[0, 8] == 1 and k[0, 7] == 0
    assert not np.array_equal(k, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17)))


def _reference_boundary(gt, pred, r):
    """Full-frame F without any cropping: the official recipe written plainly."""
    bg, bp = M.seg2bmap(gt).astype(np.uint8), M.seg2bmap(pred).astype(np.uint8)
    k = M.disk(r)
    dg, dp = cv2.dilate(bg, k), cv2.dilate(bp, k)
    n_p, n_g = int(bp.sum()), int(bg.sum())
    return n_p, n_g, int((bp & dg).sum()), int((bg & dp).sum())


def test_cropped_boundary_equals_full_frame_random():
    rng = np.random.default_rng(0)
    for trial in range(60):
        h, w = rng.integers(2, 40, size=2)
        gt = np.zeros((h, w), bool)
        pred = np.zeros((h, w), bool)
        for m in (gt, pred):
            for _ in range(rng.integers(0, 3)):
                y0, x0 = rng.integers(0, h), rng.integers(0, w)
                m[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] = True
            if trial % 5 == 0:
                m ^= rng.random((h, w)) < 0.1
        r = int(rng.integers(1, 5))
        st = M.boundary_stats(gt, pred, bound_th=r)
        assert (st.n_pred_boundary, st.n_gt_boundary, st.n_pred_boundary_matched,
                st.n_gt_boundary_matched) == _reference_boundary(gt, pred, r), trial
        ids_gt, ids_pred = gt.astype(np.uint8), pred.astype(np.uint8)
        js, fs = M.frame_scores(ids_gt, ids_pred, 1, bound_th=r)
        assert js[0] == M.db_eval_iou(gt, pred) and fs[0] == st.F


def test_frame_scores_multi_object_and_absent_object():
    gt = np.zeros((30, 40), np.uint8)
    pred = np.zeros((30, 40), np.uint8)
    gt[2:10, 2:10] = 1
    pred[2:10, 3:11] = 1
    gt[15:25, 20:30] = 2
    js, fs = M.frame_scores(gt, pred, 3)
    assert js[0] == pytest.approx(56 / 72) and js[1] == 0.0 and fs[1] == 0.0
    assert js[2] == 1.0 and fs[2] == 1.0                  # absent from both: J = F = 1


def test_stack_inputs():
    gt = np.stack([_box(1, 5, 1, 5, (20, 20)), np.zeros((20, 20), bool)])
    pred = np.stack([_box(1, 5, 2, 6, (20, 20)), np.zeros((20, 20), bool)])
    assert M.db_eval_iou(gt, pred).tolist() == [20 / 30, 1.0]
    f = M.db_eval_boundary(gt, pred)
    assert f.shape == (2,) and f[1] == 1.0 and f[0] == M.db_eval_boundary(gt[0], pred[0])


def test_db_statistics_spec_examples_and_no_uint8_overflow():
    assert M.decay_bin_edges(10).tolist() == [0, 2, 5, 7, 9]
    assert M.decay_bin_edges(48).tolist() == [0, 12, 24, 35, 47]
    assert M.decay_bin_edges(3).tolist() == [0, 1, 1, 2, 2]
    # J = 0.5 exactly is not a recall hit; decay = mean(v[0:3]) - mean(v[7:10]).
    v = [1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0, 0, 0.5]
    m, r, d = M.db_statistics(v)
    assert m == pytest.approx(0.5) and r == pytest.approx(0.2) and d == pytest.approx(2.5 / 3 - 0.5 / 3)
    # The official uint8 edges wrap from n = 256 on; ours keep counting.
    e = M.decay_bin_edges(300)
    assert e.tolist() == [0, 75, 150, 224, 299]
    m, r, d = M.db_statistics(np.r_[np.ones(150), np.zeros(150)])
    assert d == 1.0
    assert all(math.isnan(x) for x in M.db_statistics([]))


# ---------------------------------------------------------------------------------------------
# PCK (spec §2.2, §2.3), worked by hand
# ---------------------------------------------------------------------------------------------

def test_pck_jhmdb_hand_example():
    # 2 joints, 3 frames; GT box over both joints is 30 x 40 -> diagonal 50 -> normaliser 30.
    gt = np.array([[[0, 0], [30, 40]]] * 3, float)
    pred = gt.copy()
    pred[0] = [[500, 500], [500, 500]]        # frame 0 is the given label: never scored
    pred[1, 0] += [3, 0]                       # d = 3  -> 0.1  (<= 0.1 counts)
    pred[1, 1] += [6, 0]                       # d = 6  -> 0.2
    pred[2, 0] += [0, 4]                       # d = 4  -> 0.1333
    pred[2, 1] += [0, 9.1]                     # d = 9.1 -> 0.3033
    res = M.pck_jhmdb(pred, gt, alphas=(0.1, 0.2))
    assert res.counts.tolist() == [2, 2]
    assert res.per_joint[0].tolist() == [0.5, 0.0]
    assert res.per_joint[1].tolist() == [1.0, 0.5]
    assert res.mean(0.1) == pytest.approx(0.25) and res.mean(0.2) == pytest.approx(0.75)
    assert res.to_dict() == {"PCK@0.1": pytest.approx(0.25), "PCK@0.2": pytest.approx(0.75)}


def test_pck_jhmdb_invalid_predictions_shrink_the_box_and_pool_per_joint():
    # 3 joints.  In frame 1 joint 2's prediction is -1: it is not scored and its GT is left out of
    # the box, so the normaliser is 0.6 * |(30,40)| = 30 instead of the 3-joint box.
    gt = np.array([[[0, 0], [30, 40], [300, 400]]] * 2, float)
    pred = gt.copy()
    pred[1, 0] += [0, 5]          # 5 / 30 = 0.1667
    pred[1, 2] = [-1, -1]
    # a second video, pooled per joint: every joint exact
    gt2 = np.array([[[0, 0], [6, 8], [3, 4]]] * 2, float)
    res = M.pck_jhmdb([pred, gt2.copy()], [gt, gt2], alphas=(0.1, 0.2))
    assert res.counts.tolist() == [2, 2, 1]
    assert res.per_joint[0].tolist() == [0.5, 1.0, 1.0]
    assert res.per_joint[1].tolist() == [1.0, 1.0, 1.0]
    assert res.mean(0.1) == pytest.approx(2.5 / 3)
    # video 1 alone: joint 2 is never scored, so it is NaN and left out of the mean over joints
    alone = M.pck_jhmdb(pred, gt, alphas=(0.2,))
    assert alone.counts.tolist() == [1, 1, 0] and np.isnan(alone.per_joint[0, 2])
    assert alone.mean(0.2) == 1.0


def test_pck_badja_hand_example():
    # area 400 -> sqrt 20 -> threshold 0.2 * 20 = 4 px
    gt = np.zeros((3, 3, 2))
    pred = gt.copy()
    pred[1, 0] = [4, 0]           # exactly 4: correct
    pred[1, 1] = [3, 3]           # 4.24: wrong
    pred[1, 2] = [100, 100]       # invisible: not scored
    pred[2, 0] = [np.nan, np.nan]  # lost point: a miss
    pred[2, 1] = [0, 1]           # correct
    vis = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1]], bool)
    res = M.pck_badja(pred, gt, vis, seg_area=[1, 400, 400])
    assert (res.n_correct, res.n_scored) == (3, 5)     # frame 0 skipped; frame 2 joint 2 exact
    assert res.pck == pytest.approx(0.6)
    # normaliser is a parameter: with a fixed 1-px scale only exact hits count
    res = M.pck_badja(pred, gt, vis, seg_area=[1, 400, 400], alpha=0.5, normaliser=lambda a: np.ones_like(a))
    assert (res.n_correct, res.n_scored) == (1, 5)
    pooled = M.pck_badja([pred, pred], [gt, gt], [vis, vis], [[1, 400, 400]] * 2)
    assert (pooled.n_correct, pooled.n_scored) == (6, 10)


# ---------------------------------------------------------------------------------------------
# mIoU (spec §2.4)
# ---------------------------------------------------------------------------------------------

def test_confusion_and_miou_by_hand():
    cm = M.ConfusionMatrix(4)
    gt = np.array([[0, 0, 1, 1], [1, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 2, 3]])      # the 255 gt pixel is ignored
    cm.update(gt, pred)
    assert cm.hist.tolist() == [[1, 1, 0, 0], [0, 2, 1, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    iou = cm.iou()
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == pytest.approx(2 / 4) and iou[2] == pytest.approx(2 / 3)
    assert math.isnan(iou[3])                          # class 3 absent from gt and prediction
    assert cm.miou() == pytest.approx((0.5 + 0.5 + 2 / 3) / 3)
    assert M.miou(cm.hist) == cm.miou()
    s = cm.scores()
    assert s["pixel_accuracy"] == pytest.approx(5 / 7)
    other = M.ConfusionMatrix(4)
    other.update(np.array([3]), np.array([0]))
    cm += other
    assert cm.iou()[3] == 0.0 and cm.hist[3, 0] == 1
    with pytest.raises(ValueError):
        cm.update(np.array([0]), np.array([4]))
