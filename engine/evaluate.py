"""Dataset runners: score predictions against ground truth and write JSON + Markdown reports.

The metric arithmetic lives in `engine.metrics`; this module finds the files, applies the
benchmarks' protocols and formats the tables.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

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


# =============================================================================================
# Dataset runners: propagate a model through DAVIS-format sequences, then score what it made
# =============================================================================================

DAVIS_RUN_MIN_FRAMES = 3   # the protocol drops the first and the last frame: 3 leave one to score

# progress(phase, name, done, total): phase "propagate" counts frames over the whole run,
# phase "score" counts sequences (called before each one, as evaluate_davis_predictions does).
RunProgress = Callable[[str, str, int, int], None]


@dataclass
class DavisDatasetReport(DavisReport):
    """A `DavisReport` on predictions this run made itself, plus how they were made and how fast.

    Its JSON is the prediction-folder report (same keys, same meaning) with one key added,
    "propagation", so whatever reads one kind of `results.json` reads the other.
    """
    dataset_dir: str = ""
    propagation: dict = field(default_factory=dict)

    def to_json_dict(self) -> dict:
        d = super().to_json_dict()
        d["propagation"] = _davis_json_safe(self.propagation)
        return d

    def to_markdown(self) -> str:
        p = self.propagation
        lines = [super().to_markdown().rstrip("\n"), "", "## Propagation", ""]
        if p.get("frames_limit"):
            lines += [f"**Only the first {p['frames_limit']} frames of each sequence were propagated and "
                      f"scored: these numbers are not comparable with published ones.**", ""]
        params = ", ".join(f"{k}={v}" for k, v in p.get("params", {}).items())
        lines += [f"- dataset: `{self.dataset_dir}`",
                  f"- model: `{p.get('model')}` on {p.get('device')} ({p.get('precision')}, "
                  f"{p.get('torch_threads')} torch threads)",
                  f"- parameters: {params}"]
        for k, v in (p.get("run_info") or {}).items():
            lines.append(f"- {k}: `{v}`")
        tot = p.get("total", {})
        lines += ["", "| Sequence | frames | propagation s | frames/s |", "|---|---:|---:|---:|"]
        for name, t in p.get("sequences", {}).items():
            lines.append(f"| {name} | {t['frames']} | {t['seconds']:.1f} | {t['frames_per_s']:.2f} |")
        if tot:
            lines.append(f"| **total** | {tot['frames']} | {tot['seconds']:.1f} | {tot['frames_per_s']:.2f} |")
            lines += ["", f"Wall time {tot['wall_seconds']:.1f} s: checks, propagation, writing the masks, and "
                          f"scoring ({tot['score_seconds']:.1f} s)."]
        return "\n".join(lines) + "\n"


@dataclass
class _DavisRunItem:
    name: str
    video: object                 # engine.video.VideoSource, opened during the checks
    frame_names: list[str]        # stem of frame i's file: predictions are named after it
    n_frames: int                 # frames to propagate (after the `frames` limit)
    gt_files: list[Path]          # ground truth the scorer must read (after the limit)
    key_mask: np.ndarray


def evaluate_davis_dataset(dataset_dir: "str | os.PathLike", encoder, params=None, device: str = "auto", *,
                           out_dir: "str | os.PathLike", sequences: "Sequence[str] | None" = None,
                           frames: "int | None" = None, progress: "RunProgress | None" = None,
                           run_info: "dict | None" = None, propagator=None) -> DavisDatasetReport:
    """Propagate each sequence's first annotation with `encoder`, write the masks, score them.

    `dataset_dir` holds `<seq>/JPEGImages/*.jpg` + `<seq>/Annotations/*.png` (or the official
    `JPEGImages/480p/<seq>` + `Annotations/480p/<seq>`); the sequence order is the one
    `evaluate_davis_predictions` uses.  Every sequence is checked (frames open, first annotation
    readable and of the frames' size, annotations name existing frames) before any propagation.
    Each sequence runs forward from frame 0 with `Propagator.run(video, {0: mask}, start=0)`;
    `<out_dir>/predictions/<seq>/<frame>.png` are DAVIS palette PNGs named like the frames (the
    keyframe's file is the given mask).  `frames=N` propagates and scores only the first N
    frames of each sequence (the scorer sees a ground-truth view cut to those frames, so the
    first/last-frame exclusion applies to the cut sequence).  `out_dir` is written as a whole
    (predictions, results.json, results.md) only when everything succeeded.  `run_info` (e.g.
    the checkpoint path) is recorded in the report.  `propagator` replaces the one built from
    `encoder`/`params` (anything with `Propagator.run`'s contract, e.g. the optical-flow baseline).
    """
    from dataclasses import asdict

    import torch

    from .propagate import PropagationParams, Propagator

    t_start = time.perf_counter()
    root = Path(dataset_dir)
    if not root.is_dir():
        raise EvaluationError(root, "dataset folder does not exist")
    if frames is not None and int(frames) < DAVIS_RUN_MIN_FRAMES:
        raise EvaluationError(None, f"frames must be at least {DAVIS_RUN_MIN_FRAMES} (the first and the last "
                                    f"frame of a sequence are not scored), got {frames}")
    params = (params or PropagationParams()).validate()
    names = _davis_sequence_order(root, sequences)
    items: list[_DavisRunItem] = []
    timings: dict[str, dict] = {}
    out = Path(out_dir)
    done = 0
    try:
        for name in names:   # check every sequence before hours of work
            items.append(_davis_run_item(root, name, frames))
        prop = propagator or Propagator(encoder, params, device=device)
        total_frames = sum(it.n_frames for it in items)
        with atomic.staged_dir(out) as stage:
            pred_root = stage / "predictions"
            for it in items:
                timings[it.name] = _davis_run_sequence(prop, it, pred_root / it.name, progress, done, total_frames)
                done += it.n_frames
                it.video.close()
                if prop.extractor is not None:
                    prop.extractor.clear_cache()   # nothing is shared between sequences; free the memory
            t_score = time.perf_counter()
            score_progress = None if progress is None else (lambda s, i, n: progress("score", s, i, n))
            with _davis_gt_view(root, items, frames is not None) as gt_root:
                scored = evaluate_davis_predictions(pred_root, gt_root, names, progress=score_progress)
            t_end = time.perf_counter()
            prop_s = sum(t["seconds"] for t in timings.values())
            n_done = sum(t["frames"] for t in timings.values())
            report = DavisDatasetReport(
                gt_dir=str(root), pred_dir=str(out / "predictions"), sequences=scored.sequences,
                bound_th=scored.bound_th, seconds=t_end - t_start, dataset_dir=str(root),
                propagation={
                    "model": _model_name(prop), "device": str(prop.device), "precision": prop.precision,
                    "torch_threads": torch.get_num_threads(), "params": asdict(prop.params),
                    "frames_limit": None if frames is None else int(frames),
                    "run_info": dict(run_info or {}),
                    "sequences": timings,
                    "total": {"frames": n_done, "seconds": prop_s,
                              "frames_per_s": n_done / prop_s if prop_s > 0 else None,
                              "score_seconds": t_end - t_score, "wall_seconds": t_end - t_start},
                })
            report.write(stage)
    finally:
        for it in items:
            it.video.close()
    return report


def _model_name(prop) -> str:
    encoder = getattr(getattr(prop, "extractor", None), "encoder", None)
    return encoder.spec.name if encoder is not None else getattr(prop, "name", type(prop).__name__)


def _davis_frames_folder(root: Path, name: str) -> Path:
    for cand in (root / name / "JPEGImages", root / "JPEGImages" / "480p" / name):
        if cand.is_dir():
            return cand
    raise EvaluationError(root / name, f"no frame folder for sequence {name!r} (looked for {name}/JPEGImages/ "
                                       f"and JPEGImages/480p/{name}/)")


def _davis_run_item(root: Path, name: str, frames: "int | None") -> _DavisRunItem:
    from .video import VideoSource

    video = VideoSource.open(_davis_frames_folder(root, name))
    try:
        files = getattr(video, "files", None)
        frame_names = [Path(f).stem for f in files] if files is not None else [f"{i:05d}" for i in range(len(video))]
        n = len(video) if frames is None else min(int(frames), len(video))
        gt_folder = _davis_gt_folder(root, name)
        gt_all = _davis_list_pngs(gt_folder)
        known = set(frame_names)
        stray = [p.name for p in gt_all if p.stem not in known]
        if stray:
            raise EvaluationError(gt_folder, f"sequence {name}: annotation {stray[0]} has no frame of that name "
                                             f"({len(stray)} such file(s))")
        kept = set(frame_names[:n])
        gt_files = [p for p in gt_all if p.stem in kept]
        if len(gt_files) < DAVIS_RUN_MIN_FRAMES:
            raise EvaluationError(gt_folder, f"sequence {name}: {len(gt_files)} annotated frame(s) to score; at least "
                                             f"{DAVIS_RUN_MIN_FRAMES} are needed (the first and last are not scored)")
        key_path = gt_folder / f"{frame_names[0]}.png"
        if not key_path.is_file():
            raise EvaluationError(key_path, f"sequence {name}: the first frame has no annotation to propagate")
        key = read_mask(key_path, size=video.size)
        if np.any(key == _DAVIS_VOID):
            # Void is background for the scorer; propagated it would become an id > N and abort it.
            key = np.where(key == _DAVIS_VOID, 0, key).astype(np.uint8)
        if not key.any():
            raise EvaluationError(key_path, f"sequence {name}: the first annotation has no object")
        return _DavisRunItem(name, video, frame_names, n, gt_files, key)
    except BaseException:
        video.close()
        raise


def _davis_run_sequence(prop, it: _DavisRunItem, pred_dir: Path, progress, done: int, total: int) -> dict:
    from .labels import write_mask

    pred_dir.mkdir(parents=True, exist_ok=True)
    gen = prop.run(it.video, {0: it.key_mask}, start=0, stop=it.n_frames)
    seconds = write_s = 0.0
    count = 0
    while True:
        t0 = time.perf_counter()
        r = next(gen, None)
        t1 = time.perf_counter()
        seconds += t1 - t0      # the propagator's own time: features, affinity, decoding
        if r is None:
            break
        # The keyframe file is the given mask itself, not its round trip through the feature grid.
        write_mask(pred_dir / f"{it.frame_names[r.index]}.png", it.key_mask if r.is_keyframe else r.mask)
        write_s += time.perf_counter() - t1
        count += 1
        if progress is not None:
            progress("propagate", it.name, done + count, total)
    if count != it.n_frames:
        raise EvaluationError(pred_dir, f"sequence {it.name}: the propagator produced {count} of {it.n_frames} frames")
    return {"frames": count, "seconds": seconds, "frames_per_s": count / seconds if seconds > 0 else None,
            "write_seconds": write_s}


@contextlib.contextmanager
def _davis_gt_view(root: Path, items: "list[_DavisRunItem]", limited: bool) -> Iterator[Path]:
    """The ground-truth root the scorer should read.

    Without a frame limit that is the dataset itself.  With one, a temporary folder of links to
    the kept annotation files: the scorer then treats the cut sequence as the whole sequence
    (its last kept frame is the one left out), and the dataset is never touched.
    """
    if not limited:
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="affinity-gt-view-") as tmp:
        view = Path(tmp)
        for it in items:
            d = view / it.name
            d.mkdir()
            for p in it.gt_files:
                try:
                    os.symlink(p.resolve(), d / p.name)
                except OSError:   # no symlinks here (some Windows setups): copy the few files
                    shutil.copyfile(p, d / p.name)
        yield view


# =============================================================================================
# BADJA keypoint propagation (research spec §2.3; data/badja/README.md)
# =============================================================================================

BADJA_REPORT_FORMAT = "affinity-annotator.badja-evaluation"
# The 37 SMAL slots of BADJA's files (code/joint_catalog.py); only 20 are ever annotated.
# Slots 35/36 are "the two ears": the source contradicts itself about which is left.
BADJA_SLOT_NAMES = (
    [f"body_{i}" for i in range(7)] + [f"upper_right_{i}" for i in range(4)] + [f"upper_left_{i}" for i in range(4)]
    + ["neck_lower", "neck_upper"] + [f"lower_right_{i}" for i in range(4)] + [f"lower_left_{i}" for i in range(4)]
    + [f"tail_{i}" for i in range(7)] + ["jaw", "nose", "chin", "ear_v149", "ear_v2124"])


@dataclass
class BadjaSequenceResult:
    name: str
    frames: list[int]               # annotated frames; frames[0] is the keyframe
    seeded: list[int]               # slots given on the keyframe (visible and inside the frame)
    n_correct: int
    n_scored: int                   # GT-visible seeded joints on frames[1:]
    n_unseeded: int                 # GT-visible joints on frames[1:] that were not given on the keyframe
    per_frame: list[dict]           # frame, n_scored, n_correct, threshold_px
    per_slot: dict[int, list[int]]  # slot -> [n_correct, n_scored]
    seconds: float                  # propagation time
    n_propagated: int               # frames the propagator produced (keyframe .. last annotated frame)

    @property
    def pck(self) -> float:
        return self.n_correct / self.n_scored if self.n_scored else math.nan


@dataclass
class BadjaReport:
    """PCK@alpha of propagated BADJA joints; pooled over all scored joints of all sequences."""
    badja_dir: str
    frames_dir: str
    alpha: float
    sequences: list[BadjaSequenceResult]
    skipped: dict[str, str]                     # sequence -> why it was not evaluated
    propagation: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_scored(self) -> int:
        return sum(s.n_scored for s in self.sequences)

    @property
    def n_correct(self) -> int:
        return sum(s.n_correct for s in self.sequences)

    @property
    def pck(self) -> float:
        return self.n_correct / self.n_scored if self.n_scored else math.nan

    @property
    def mean_sequence_pck(self) -> float:
        v = [s.pck for s in self.sequences if s.n_scored]
        return float(np.mean(v)) if v else math.nan

    def to_json_dict(self) -> dict:
        key = f"PCK@{self.alpha:g}"
        return _davis_json_safe({
            "format": BADJA_REPORT_FORMAT, "version": 1,
            "protocol": {"alpha": self.alpha, "normaliser": "sqrt(area of the ground-truth mask)",
                         "scored": "joints visible in the ground truth and given on the keyframe (the first "
                                   "annotated frame), on every annotated frame after it",
                         "source": "research spec §2.3 (BADJA paper definition, unverified against code)"},
            "badja_dir": self.badja_dir, "frames_dir": self.frames_dir,
            "global": {key: self.pck, f"{key} mean over sequences": self.mean_sequence_pck,
                       "n_correct": self.n_correct, "n_scored": self.n_scored,
                       "n_unseeded": sum(s.n_unseeded for s in self.sequences)},
            "sequences": {s.name: {key: s.pck, "n_correct": s.n_correct, "n_scored": s.n_scored,
                                   "n_unseeded": s.n_unseeded, "keyframe": s.frames[0],
                                   "annotated_frames": s.frames,
                                   "seeded_slots": {str(k): BADJA_SLOT_NAMES[k] if k < len(BADJA_SLOT_NAMES) else str(k)
                                                    for k in s.seeded},
                                   "per_frame": s.per_frame,
                                   "per_slot": {str(k): {"n_correct": v[0], "n_scored": v[1]}
                                                for k, v in s.per_slot.items()},
                                   "frames_propagated": s.n_propagated, "seconds": s.seconds,
                                   "frames_per_s": s.n_propagated / s.seconds if s.seconds > 0 else None}
                          for s in self.sequences},
            "skipped": dict(self.skipped),
            "propagation": self.propagation,
        })

    def to_markdown(self) -> str:
        key = f"PCK@{self.alpha:g}"
        p = self.propagation
        lines = ["# BADJA keypoint propagation", "",
                 f"- annotations: `{self.badja_dir}`", f"- frames: `{self.frames_dir}`",
                 f"- {key}: a joint is correct within {self.alpha:g} x sqrt(ground-truth mask area) pixels; "
                 f"scored are the joints visible in the ground truth and given on the first annotated frame, "
                 f"on every later annotated frame (definition from the BADJA paper, not checked against code)",
                 f"- model: `{p.get('model')}` on {p.get('device')} ({p.get('precision')})", "",
                 f"**{key} = {_badja_fmt(self.pck)}** ({self.n_correct}/{self.n_scored} joints; mean over "
                 f"sequences {_badja_fmt(self.mean_sequence_pck)})", "",
                 f"| Sequence | {key} | correct | scored | not given on keyframe | frames/s |",
                 "|---|---:|---:|---:|---:|---:|"]
        for s in self.sequences:
            fps = s.n_propagated / s.seconds if s.seconds > 0 else math.nan
            lines.append(f"| {s.name} | {_badja_fmt(s.pck)} | {s.n_correct} | {s.n_scored} | {s.n_unseeded} "
                         f"| {fps:.2f} |")
        if self.skipped:
            lines += ["", "## Not evaluated", ""] + [f"- {k}: {v}" for k, v in self.skipped.items()]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: "str | os.PathLike") -> tuple[Path, Path]:
        out = Path(out_dir)
        j, m = out / "results.json", out / "results.md"
        atomic.write_text(j, json.dumps(self.to_json_dict(), indent=1, allow_nan=False) + "\n")
        atomic.write_text(m, self.to_markdown())
        return j, m


def _badja_fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def evaluate_badja(badja_dir: "str | os.PathLike", davis_frames_dir: "str | os.PathLike", encoder, params=None,
                   device: str = "auto", *, out_dir: "str | os.PathLike | None" = None,
                   sequences: "Sequence[str] | None" = None, alpha: float = 0.2,
                   progress: "RunProgress | None" = None, run_info: "dict | None" = None,
                   propagator=None) -> BadjaReport:
    """Propagate BADJA joints from each sequence's first annotated frame and score PCK@alpha.

    Annotations: `<badja_dir>/joints_480p.json` (x, y at its `image_size_wh`; rescaled to the
    frames' size).  Frames and ground-truth masks (for the sqrt(area) normaliser):
    `<davis_frames_dir>/<seq>/JPEGImages/`, `.../Annotations/` (or the official 480p layout).
    A sequence whose frames or masks are not there is skipped with the reason recorded, as are
    the original annotation files with no conversion.  The keyframe's visible joints are
    propagated forward to the last annotated frame; absent joints stay absent and are not scored
    (a joint the propagator loses is a miss).  With `out_dir`, it receives results.json,
    results.md and predictions/<seq>.json (every propagated frame), as a whole.
    """
    from dataclasses import asdict

    import torch

    from .labels import Keypoints
    from .metrics import pck_badja
    from .propagate import PropagationParams, Propagator

    t_start = time.perf_counter()
    bdir, fdir = Path(badja_dir), Path(davis_frames_dir)
    ann_path = bdir / "joints_480p.json"
    if not ann_path.is_file():
        raise EvaluationError(ann_path, "BADJA annotation file (joints_480p.json) does not exist")
    if not fdir.is_dir():
        raise EvaluationError(fdir, "frame folder does not exist")
    if not alpha > 0:
        raise EvaluationError(None, f"alpha must be positive, got {alpha}")
    try:
        doc = json.loads(ann_path.read_text())
        ann_wh = tuple(float(v) for v in doc["image_size_wh"])
        all_seqs = dict(doc["sequences"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EvaluationError(ann_path, f"not a BADJA joints_480p.json ({exc!r})") from None

    skipped: dict[str, str] = {}
    if sequences is None:
        names = list(all_seqs)
        originals = sorted(p.stem for p in (bdir / "joint_annotations").glob("*.json")) \
            if (bdir / "joint_annotations").is_dir() else []
        for n in originals:
            if n not in all_seqs:
                skipped[n] = "only the original full-resolution annotations: its frames are not available"
    else:
        names = [str(s) for s in sequences]
        unknown = [n for n in names if n not in all_seqs]
        if unknown:
            raise EvaluationError(ann_path, f"no such BADJA sequence: {', '.join(unknown)} "
                                            f"(have {', '.join(all_seqs)})")

    plans = []
    try:
        for name in names:
            plan, why = _badja_plan(fdir, name, all_seqs[name], ann_wh, ann_path)
            if plan is None:
                skipped[name] = why
            else:
                plans.append(plan)
        if not plans:
            raise EvaluationError(fdir, "no BADJA sequence can be evaluated: "
                                        + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

        params = (params or PropagationParams()).validate()
        prop = propagator or Propagator(encoder, params, device=device)
        total = sum(p["frames"][-1] - p["frames"][0] + 1 for p in plans)
        done = 0
        results, predictions = [], {}
        for plan in plans:
            name, video, ann_frames = plan["name"], plan["video"], plan["frames"]
            k0, last = ann_frames[0], ann_frames[-1]
            seed = Keypoints(plan["gt_xy"][0], plan["seeded"])
            gen = prop.run(video, {k0: seed}, start=k0, stop=last + 1)
            got: dict[int, Keypoints] = {}
            seconds = 0.0
            while True:
                t0 = time.perf_counter()
                r = next(gen, None)
                seconds += time.perf_counter() - t0
                if r is None:
                    break
                got[r.index] = seed if r.is_keyframe else r.keypoints
                if progress is not None:
                    progress("propagate", name, done + len(got), total)
            done += len(got)
            video.close()
            if prop.extractor is not None:
                prop.extractor.clear_cache()
            missing = [f for f in ann_frames if f not in got]
            if missing:
                raise EvaluationError(None, f"BADJA {name}: the propagator produced no result for frame {missing[0]}")
            pred = np.stack([np.where(got[f].visible[:, None], got[f].xy, np.nan) for f in ann_frames])
            vis = plan["gt_vis"] & plan["seeded"][None, :]
            res = pck_badja(pred, plan["gt_xy"], vis, plan["areas"], alpha=alpha)
            per_frame, per_slot = [], {}
            for t in range(1, len(ann_frames)):
                ft = pck_badja(pred[t:t + 1], plan["gt_xy"][t:t + 1], vis[t:t + 1], plan["areas"][t:t + 1],
                               alpha=alpha, skip_first=False)
                per_frame.append({"frame": ann_frames[t], "n_correct": ft.n_correct, "n_scored": ft.n_scored,
                                  "threshold_px": alpha * math.sqrt(plan["areas"][t])})
            for k in np.flatnonzero(vis[1:].any(axis=0)):
                sk = pck_badja(pred[:, k:k + 1], plan["gt_xy"][:, k:k + 1], vis[:, k:k + 1], plan["areas"], alpha=alpha)
                per_slot[int(k)] = [sk.n_correct, sk.n_scored]
            results.append(BadjaSequenceResult(
                name=name, frames=list(ann_frames), seeded=[int(k) for k in np.flatnonzero(plan["seeded"])],
                n_correct=res.n_correct, n_scored=res.n_scored,
                n_unseeded=int(np.count_nonzero(plan["gt_vis"][1:] & ~plan["seeded"][None, :])),
                per_frame=per_frame, per_slot=per_slot, seconds=seconds, n_propagated=len(got)))
            predictions[name] = {"keyframe": k0, "size_wh": list(video.size), "frames": {
                str(f): {"points": [[float(x), float(y)] if v else None for (x, y), v in zip(kp.xy, kp.visible)]}
                for f, kp in sorted(got.items())}}
    finally:
        for p in plans:
            p["video"].close()

    report = BadjaReport(
        badja_dir=str(bdir), frames_dir=str(fdir), alpha=float(alpha), sequences=results, skipped=skipped,
        propagation={"model": _model_name(prop), "device": str(prop.device), "precision": prop.precision,
                     "torch_threads": torch.get_num_threads(), "params": asdict(prop.params),
                     "run_info": dict(run_info or {})},
        seconds=time.perf_counter() - t_start)
    if out_dir is not None:
        with atomic.staged_dir(out_dir) as stage:
            for name, doc_p in predictions.items():
                atomic.write_text(stage / "predictions" / f"{name}.json", json.dumps(doc_p) + "\n")
            report.write(stage)
    return report


def _badja_plan(fdir: Path, name: str, entry: dict, ann_wh, ann_path: Path):
    """(plan, None) for a sequence that can be evaluated, else (None, why not)."""
    from .video import VideoSource

    source = entry.get("frames_source", "?")
    try:
        frames_folder = _davis_frames_folder(fdir, name)
    except EvaluationError:
        return None, f"no frames in {fdir} (BADJA's frames for it: {source})"
    gt_folder = _davis_gt_folder(fdir, name, must_exist=False)
    try:
        anns = sorted(entry["annotations"], key=lambda a: int(a["frame"]))
        ann_frames = [int(a["frame"]) for a in anns]
        xy = np.array([a["keypoints_xy"] for a in anns], np.float64)
        vis = np.array([a["visible"] for a in anns], bool)
    except (KeyError, TypeError, ValueError) as exc:
        raise EvaluationError(ann_path, f"sequence {name}: malformed annotations ({exc!r})") from None
    if xy.ndim != 3 or xy.shape[2] != 2 or vis.shape != xy.shape[:2]:
        raise EvaluationError(ann_path, f"sequence {name}: keypoints {xy.shape} and visibility {vis.shape} "
                                        f"do not fit")
    if len(ann_frames) < 2 or len(set(ann_frames)) != len(ann_frames):
        return None, f"needs at least two distinct annotated frames, has {ann_frames}"
    video = VideoSource.open(frames_folder)
    try:
        if ann_frames[-1] >= len(video):
            return _badja_skip(video, f"annotated frame {ann_frames[-1]} but only {len(video)} frames in "
                                      f"{frames_folder}")
        files = getattr(video, "files", None)
        stems = [Path(f).stem for f in files] if files is not None else [f"{i:05d}" for i in range(len(video))]
        areas = []
        for f in ann_frames:
            mp = gt_folder / f"{stems[f]}.png"
            if not mp.is_file():
                return _badja_skip(video, f"no ground-truth mask {mp} (needed for the sqrt(area) normaliser)")
            m = read_mask(mp, size=video.size)
            areas.append(float(np.count_nonzero((m > 0) & (m != _DAVIS_VOID))))
        w, h = video.size
        xy = xy * np.array([w / ann_wh[0], h / ann_wh[1]])
        xy[~vis] = np.nan
        x0, y0 = xy[0, :, 0], xy[0, :, 1]
        with np.errstate(invalid="ignore"):
            inside = (x0 >= 0) & (x0 < w) & (y0 >= 0) & (y0 < h)
        seeded = vis[0] & inside
        if not seeded.any():
            return _badja_skip(video, f"no visible joint inside the frame on the first annotated frame {ann_frames[0]}")
        return {"name": name, "video": video, "frames": ann_frames, "gt_xy": xy, "gt_vis": vis,
                "seeded": seeded, "areas": np.array(areas)}, None
    except BaseException:
        video.close()
        raise


def _badja_skip(video, why: str):
    video.close()
    return None, why
