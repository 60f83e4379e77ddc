"""Dataset runners: score predictions against ground truth and write JSON + Markdown reports.

The metric arithmetic lives in `engine.metrics`; this module finds the files, applies the
benchmarks' protocols and formats the tables.
"""
from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from . import atomic
from .errors import EvaluationError, LabelError
from .labels import read_mask
from .metrics import boundary_radius, db_statistics, frame_scores

# =============================================================================================
# DAVIS prediction folders, semi-supervised protocol (davis2017-evaluation; research spec §2.1)
# =============================================================================================

DAVIS_GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
DAVIS_REPORT_FORMAT = "affinity-annotator.davis-evaluation"
_DAVIS_VOID = 255


@dataclass
class DavisObjectResult:
    """Per-frame J and F of one object over the evaluated frames, and their statistics."""
    J: list[float]
    F: list[float]

    def stats(self) -> dict[str, float]:
        jm, jr, jd = db_statistics(self.J)
        fm, fr, fd = db_statistics(self.F)
        return {"J-Mean": jm, "J-Recall": jr, "J-Decay": jd, "F-Mean": fm, "F-Recall": fr, "F-Decay": fd}


@dataclass
class DavisSequenceResult:
    name: str
    shape_hw: tuple[int, int]
    frame_ids_all: list[str]
    frame_ids_evaluated: list[str]
    n_objects: int                      # N: largest id in the first gt frame
    max_pred_id: int                    # K: largest id in the evaluated prediction frames
    bound_pix: int                      # F tolerance radius
    objects: dict[int, DavisObjectResult] = field(default_factory=dict)

    def mean(self) -> dict[str, float]:
        """Plain mean of this sequence's objects (not an official table; objects weigh equally)."""
        if not self.objects:
            return {"J&F-Mean": math.nan, "J-Mean": math.nan, "F-Mean": math.nan}
        st = [o.stats() for o in self.objects.values()]
        jm = float(np.mean([s["J-Mean"] for s in st]))
        fm = float(np.mean([s["F-Mean"] for s in st]))
        return {"J&F-Mean": (jm + fm) / 2.0, "J-Mean": jm, "F-Mean": fm}


@dataclass
class DavisReport:
    """Result of `evaluate_davis_predictions`: official tables plus every per-frame value."""
    gt_dir: str
    pred_dir: str
    sequences: list[DavisSequenceResult]
    bound_th: float = 0.008
    seconds: float = 0.0                # wall time of the evaluation (kept out of the JSON)

    @property
    def n_frames_evaluated(self) -> int:
        return sum(len(s.frame_ids_evaluated) for s in self.sequences)

    @property
    def n_frame_objects(self) -> int:
        return sum(len(s.frame_ids_evaluated) * s.n_objects for s in self.sequences)

    def global_table(self) -> dict[str, float]:
        """The official global table: every (sequence, object) is one entry, equally weighted."""
        st = [o.stats() for s in self.sequences for o in s.objects.values()]
        if not st:
            return {c: math.nan for c in DAVIS_GLOBAL_COLUMNS}
        col = {k: float(np.mean(np.array([s[k] for s in st], np.float64))) for k in st[0]}
        return {"J&F-Mean": (col["J-Mean"] + col["F-Mean"]) / 2.0, **{c: col[c] for c in DAVIS_GLOBAL_COLUMNS[1:]}}

    def per_object_table(self) -> list[dict]:
        """The official per-sequence table: one row `<seq>_<k>` per object, in val-list order."""
        rows = []
        for s in self.sequences:
            for k, o in s.objects.items():
                st = o.stats()
                rows.append({"Sequence": f"{s.name}_{k}", "J-Mean": st["J-Mean"], "F-Mean": st["F-Mean"]})
        return rows

    def to_json_dict(self) -> dict:
        seqs = {}
        for s in self.sequences:
            seqs[s.name] = {
                "shape_hw": list(s.shape_hw),
                "frame_ids_all": list(s.frame_ids_all),
                "frame_ids_evaluated": list(s.frame_ids_evaluated),
                "n_objects": s.n_objects,
                "max_pred_id_in_evaluated_frames": s.max_pred_id,
                "bound_pix": s.bound_pix,
                "mean": s.mean(),
                "objects": {str(k): {"J": list(o.J), "F": list(o.F), **o.stats()} for k, o in s.objects.items()},
            }
        return _davis_json_safe({
            "format": DAVIS_REPORT_FORMAT,
            "version": 1,
            "task": "semi-supervised",
            "bound_th": self.bound_th,
            "gt_dir": self.gt_dir,
            "pred_dir": self.pred_dir,
            "sequence_order": [s.name for s in self.sequences],
            "global": self.global_table(),
            "per_object": self.per_object_table(),
            "sequences": seqs,
        })

    def to_markdown(self) -> str:
        g = self.global_table()
        n_obj = sum(len(s.objects) for s in self.sequences)
        lines = [
            "# DAVIS evaluation (semi-supervised)",
            "",
            f"- ground truth: `{self.gt_dir}`",
            f"- predictions: `{self.pred_dir}`",
            f"- {len(self.sequences)} sequences, {n_obj} objects, {self.n_frames_evaluated} evaluated frames "
            f"(first and last frame of each sequence excluded), boundary threshold {self.bound_th:g}",
            "",
            "## Global (mean over all objects of all sequences)",
            "",
            "| " + " | ".join(DAVIS_GLOBAL_COLUMNS) + " |",
            "|" + "---:|" * len(DAVIS_GLOBAL_COLUMNS),
            "| " + " | ".join(_davis_fmt(g[c]) for c in DAVIS_GLOBAL_COLUMNS) + " |",
            "",
            "## Per sequence (mean of its objects)",
            "",
            "| Sequence | objects | frames | J&F-Mean | J-Mean | F-Mean |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for s in self.sequences:
            m = s.mean()
            lines.append(f"| {s.name} | {s.n_objects} | {len(s.frame_ids_evaluated)} | {_davis_fmt(m['J&F-Mean'])} "
                         f"| {_davis_fmt(m['J-Mean'])} | {_davis_fmt(m['F-Mean'])} |")
        lines += ["", "## Per object", "", "| Sequence | J-Mean | F-Mean |", "|---|---:|---:|"]
        for row in self.per_object_table():
            lines.append(f"| {row['Sequence']} | {_davis_fmt(row['J-Mean'])} | {_davis_fmt(row['F-Mean'])} |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: "str | os.PathLike") -> tuple[Path, Path]:
        """Write `results.json` and `results.md` into out_dir (each atomically); return their paths.

        Results are always recomputed: unlike the official script, existing files are never
        re-read in place of an evaluation.
        """
        out = Path(out_dir)
        j, m = out / "results.json", out / "results.md"
        atomic.write_text(j, json.dumps(self.to_json_dict(), indent=1, allow_nan=False) + "\n")
        atomic.write_text(m, self.to_markdown())
        return j, m


def evaluate_davis_predictions(pred_dir: "str | os.PathLike", gt_dir: "str | os.PathLike",
                               sequences: "Sequence[str] | None" = None, bound_th: float = 0.008,
                               workers: int = 2,
                               progress: "Callable[[str, int, int], None] | None" = None) -> DavisReport:
    """Score a folder of predicted masks the way the official semi-supervised DAVIS evaluator does.

    Ground truth per sequence: `<gt_dir>/<seq>/Annotations/*.png` (our DAVIS-2016 layout),
    `<gt_dir>/Annotations/480p/<seq>/*.png` (official DAVIS layout) or `<gt_dir>/<seq>/*.png`.
    Predictions: `<pred_dir>/<seq>/<frame>.png`, same names as the gt.  Sequence order: the
    `sequences` argument, else `<gt_dir>/sequences.txt`, else the "val" list of
    `<gt_dir>/sequences.json`, else `<gt_dir>/ImageSets/2017/val.txt`, else the sequence folders
    sorted by name.

    Per sequence (all as officially): the frames are the gt PNGs sorted by name, minus the first
    and the last; N = the largest id in the first gt frame; gt void (255 in an indexed mask) counts
    as background; a prediction id > N is an error; objects the prediction never mentions are
    scored as empty.  A 0/255 greyscale mask (DAVIS-2016 style, gt or prediction) is object 1.
    `progress(sequence, index, total)` is called before each sequence.  At most `workers` (<= 2)
    threads read and score frames.
    """
    t0 = time.perf_counter()
    gt_root, pred_root = Path(gt_dir), Path(pred_dir)
    if not gt_root.is_dir():
        raise EvaluationError(gt_root, "ground-truth folder does not exist")
    if not pred_root.is_dir():
        raise EvaluationError(pred_root, "prediction folder does not exist")
    names = _davis_sequence_order(gt_root, sequences)
    workers = max(1, min(2, int(workers)))
    cv_threads = cv2.getNumThreads()
    # Our own threads already parallelise over frames; OpenCV's pool on top would oversubscribe.
    cv2.setNumThreads(1 if workers > 1 else min(2, max(cv_threads, 1)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="davis-eval") if workers > 1 else None
    try:
        results = []
        for i, name in enumerate(names):
            if progress is not None:
                progress(name, i, len(names))
            results.append(_davis_evaluate_sequence(name, _davis_gt_folder(gt_root, name),
                                                    _davis_pred_folder(pred_root, name), bound_th, pool))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        cv2.setNumThreads(cv_threads)
    return DavisReport(str(gt_root), str(pred_root), results, bound_th, time.perf_counter() - t0)


def _davis_fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _davis_json_safe(o):
    """JSON has no NaN: a missing statistic becomes null."""
    if isinstance(o, dict):
        return {k: _davis_json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_davis_json_safe(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    return o


def _davis_sequence_order(gt_root: Path, sequences) -> list[str]:
    if sequences is not None:
        names = [str(s) for s in sequences]
    elif (gt_root / "sequences.txt").is_file():
        names = [ln.strip() for ln in (gt_root / "sequences.txt").read_text().splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
    elif (gt_root / "sequences.json").is_file():
        try:
            names = [str(s) for s in json.loads((gt_root / "sequences.json").read_text())["val"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise EvaluationError(gt_root / "sequences.json", f"no usable \"val\" list ({exc})") from None
    elif (gt_root / "ImageSets" / "2017" / "val.txt").is_file():
        names = [ln.strip() for ln in (gt_root / "ImageSets" / "2017" / "val.txt").read_text().splitlines()
                 if ln.strip()]
    else:
        names = sorted(p.name for p in gt_root.iterdir()
                       if p.is_dir() and not p.name.startswith(".") and p.name != "Annotations"
                       and _davis_list_pngs(_davis_gt_folder(gt_root, p.name, must_exist=False)))
        if not names and (gt_root / "Annotations" / "480p").is_dir():
            names = sorted(p.name for p in (gt_root / "Annotations" / "480p").iterdir() if p.is_dir())
    if not names:
        raise EvaluationError(gt_root, "no sequences to evaluate")
    if len(set(names)) != len(names):
        raise EvaluationError(gt_root, f"a sequence is listed twice: {names}")
    return names


def _davis_gt_folder(gt_root: Path, name: str, must_exist: bool = True) -> Path:
    for cand in (gt_root / name / "Annotations", gt_root / "Annotations" / "480p" / name, gt_root / name):
        if cand.is_dir():
            return cand
    if must_exist:
        raise EvaluationError(gt_root / name, f"no ground-truth folder for sequence {name!r}")
    return gt_root / name


def _davis_pred_folder(pred_root: Path, name: str) -> Path:
    # A DAVIS-2016-style folder (<seq>/Annotations/) is accepted as predictions too, so a dataset
    # copy or another tool's output in that layout can be scored as it is.
    direct, nested = pred_root / name, pred_root / name / "Annotations"
    if nested.is_dir() and not _davis_list_pngs(direct):
        return nested
    return direct


def _davis_list_pngs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _davis_read(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise EvaluationError(path, f"{what} file is missing")
    try:
        return read_mask(path)
    except LabelError as exc:
        raise EvaluationError(path, exc.reason) from None


def _davis_read_gt(path: Path) -> np.ndarray:
    # read_mask already turned a 0/255 greyscale mask into 0/1, so a 255 left here is the
    # indexed-mask void label; the semi-supervised protocol treats it as background.
    m = _davis_read(path, "ground-truth")
    if np.any(m == _DAVIS_VOID):
        m = m.copy()
        m[m == _DAVIS_VOID] = 0
    return m


def _davis_score_frame(seq: str, gt_path: Path, pred_path: Path, shape_hw: tuple[int, int], n_objects: int,
                       bound_th: float) -> tuple[np.ndarray, np.ndarray, int]:
    gt = _davis_read_gt(gt_path)
    if gt.shape != shape_hw:
        raise EvaluationError(gt_path, f"sequence {seq}: ground truth is {gt.shape[1]}x{gt.shape[0]}, "
                                       f"its first frame is {shape_hw[1]}x{shape_hw[0]}")
    pred = _davis_read(pred_path, "prediction")
    if pred.shape != gt.shape:
        raise EvaluationError(pred_path, f"sequence {seq}: prediction is {pred.shape[1]}x{pred.shape[0]}, "
                                         f"ground truth is {gt.shape[1]}x{gt.shape[0]}")
    k = int(pred.max(initial=0))
    if k > n_objects:
        raise EvaluationError(pred_path, f"sequence {seq}, frame {pred_path.name}: object id {k} but the first "
                                         f"ground-truth frame has only {n_objects} object(s) (the official "
                                         f"evaluator aborts here)")
    js, fs = frame_scores(gt, pred, n_objects, bound_th)
    return js, fs, k


def _davis_evaluate_sequence(seq: str, gt_folder: Path, pred_folder: Path, bound_th: float,
                             pool: "ThreadPoolExecutor | None") -> DavisSequenceResult:
    frames = _davis_list_pngs(gt_folder)
    if len(frames) < 3:
        raise EvaluationError(gt_folder, f"sequence {seq}: {len(frames)} ground-truth frame(s); at least 3 are "
                                         f"needed (the first and last are not evaluated)")
    first = _davis_read_gt(frames[0])
    n_objects = int(first.max(initial=0))
    shape_hw = (int(first.shape[0]), int(first.shape[1]))
    evaluated = frames[1:-1]
    if not pred_folder.is_dir():
        raise EvaluationError(pred_folder, f"sequence {seq}: prediction folder is missing")

    def job(p: Path):
        return _davis_score_frame(seq, p, pred_folder / p.name, shape_hw, n_objects, bound_th)

    per_frame = list(pool.map(job, evaluated)) if pool is not None else [job(p) for p in evaluated]
    j = np.stack([r[0] for r in per_frame], axis=1) if n_objects else np.zeros((0, len(evaluated)))
    f = np.stack([r[1] for r in per_frame], axis=1) if n_objects else np.zeros((0, len(evaluated)))
    objects = {k: DavisObjectResult(j[k - 1].tolist(), f[k - 1].tolist()) for k in range(1, n_objects + 1)}
    return DavisSequenceResult(
        name=seq, shape_hw=shape_hw, frame_ids_all=[p.stem for p in frames],
        frame_ids_evaluated=[p.stem for p in evaluated], n_objects=n_objects,
        max_pred_id=max((r[2] for r in per_frame), default=0),
        bound_pix=boundary_radius(*shape_hw, bound_th=bound_th), objects=objects)
