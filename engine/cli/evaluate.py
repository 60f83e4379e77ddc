"""affinity-evaluate: J&F of a model on a DAVIS-format dataset, of a prediction folder, or BADJA PCK.

  affinity-evaluate DATASET_DIR --out RESULTS [model] [propagation] [--frames N] [--sequences a,b]
  affinity-evaluate --predictions DIR --ground-truth DIR [--out DIR]
  affinity-evaluate --badja DIR [--frames-dir DAVIS_DIR] --out RESULTS [model] [propagation]

The tables go to stdout; results.json and results.md go to --out (and the JSON to --json too).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..errors import ConfigError
from ..evaluate import DAVIS_GLOBAL_COLUMNS as _DAVIS_COLUMNS
from . import common


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affinity-evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", nargs="?", help="DAVIS-format folder (<seq>/JPEGImages, <seq>/Annotations): propagate "
                                              "each sequence's first annotation with the model and score it")
    p.add_argument("--predictions", help="score this folder of masks (<seq>/<frame>.png) instead; no model needed")
    p.add_argument("--ground-truth", help="ground truth for --predictions (a DAVIS-format or official DAVIS folder)")
    p.add_argument("--badja", help="BADJA folder (joints_480p.json): propagate the joints and score PCK")
    p.add_argument("--frames-dir", help="with --badja: DAVIS-format folder holding the frames and masks "
                                        "(default: davis2016/ beside the BADJA folder)")
    p.add_argument("--alpha", type=float, default=0.2, help="with --badja: PCK threshold (x sqrt(mask area))")
    p.add_argument("--out", help="results folder (replaced as a whole when the run succeeds); required when "
                                 "propagating")
    p.add_argument("--frames", type=int, help="propagate and score only the first N frames of each sequence "
                                              "(quick runs; not comparable with published numbers)")
    p.add_argument("--sequences", help="comma-separated sequence names (default: the dataset's val list)")
    p.add_argument("--baseline", choices=["dis-flow"],
                   help="evaluate a non-learned baseline instead of a model: dis-flow chains the labels along "
                        "OpenCV DIS optical flow (--scale sets the flow resolution)")
    common.add_run_args(p)
    return p


def _main(args) -> int:
    modes = [m for m, v in (("DATASET_DIR", args.dataset), ("--predictions", args.predictions),
                            ("--badja", args.badja)) if v]
    if len(modes) != 1:
        raise ConfigError(None, "give exactly one of DATASET_DIR, --predictions DIR or --badja DIR"
                                + (f" (got {' and '.join(modes)})" if modes else ""))
    sequences = _sequence_list(args.sequences)
    bars = _Bars()
    try:
        if args.predictions:
            return _predictions(args, sequences, bars)
        if args.badja:
            return _badja(args, sequences, bars)
        return _dataset(args, sequences, bars)
    finally:
        bars.close()


def _predictions(args, sequences, bars) -> int:
    from ..evaluate import evaluate_davis_predictions

    if not args.ground_truth:
        raise ConfigError(None, "--predictions needs --ground-truth DIR")
    model_opts = [o for o, v in (("--checkpoint", args.checkpoint), ("--model", args.model),
                                 ("--random-init", args.random_init), ("--frames", args.frames)) if v]
    if model_opts:
        raise ConfigError(None, f"--predictions scores existing masks: {', '.join(model_opts)} "
                                f"{'does' if len(model_opts) == 1 else 'do'} not apply")
    report = evaluate_davis_predictions(args.predictions, args.ground_truth, sequences,
                                        progress=lambda s, i, n: bars("score", s, i, n))
    bars.close()
    print(davis_table(report))
    if args.out:
        report.write(args.out)
    common.write_json(args.json, report.to_json_dict())
    _written(args)
    print(f"scored {report.n_frames_evaluated} frames in {report.seconds:.1f} s", file=sys.stderr)
    return 0


def _dataset(args, sequences, bars) -> int:
    from ..evaluate import evaluate_davis_dataset

    if not args.out:
        raise ConfigError(None, "--out RESULTS is required: the predicted masks and results are written there")
    if args.ground_truth:
        raise ConfigError(None, "--ground-truth goes with --predictions; DATASET_DIR holds its own annotations")
    encoder, params, prop = _model(args)
    report = evaluate_davis_dataset(args.dataset, encoder, params, args.device, out_dir=args.out,
                                    sequences=sequences, frames=args.frames, progress=bars,
                                    run_info=_run_info(args), propagator=prop)
    bars.close()
    print(davis_table(report, report.propagation))
    common.write_json(args.json, report.to_json_dict())
    _written(args)
    t = report.propagation["total"]
    print(f"propagated {t['frames']} frames in {t['seconds']:.1f} s ({_num(t['frames_per_s'], 2)} frames/s); "
          f"total {t['wall_seconds']:.1f} s", file=sys.stderr)
    return 0


def _model(args):
    """(encoder, params, propagator or None): a model from the model options, or the baseline."""
    if args.baseline:
        from ..flow_baseline import FlowParams, FlowPropagator
        if args.checkpoint or args.random_init:
            raise ConfigError(None, "--baseline replaces the model: --checkpoint/--random-init do not apply")
        return None, None, FlowPropagator(FlowParams(scale=args.scale))
    return common.encoder_from_args(args), common.params_from_args(args), None


def _badja(args, sequences, bars) -> int:
    from ..evaluate import evaluate_badja

    if not args.out:
        raise ConfigError(None, "--out RESULTS is required: the propagated joints and results are written there")
    if args.frames is not None:
        raise ConfigError(None, "--frames does not apply to --badja (every annotated frame is scored)")
    frames_dir = args.frames_dir
    if frames_dir is None:
        frames_dir = Path(args.badja).resolve().parent / "davis2016"
        if not frames_dir.is_dir():
            raise ConfigError(None, f"--badja needs --frames-dir DIR (no {frames_dir})")
    encoder, params, prop = _model(args)
    report = evaluate_badja(args.badja, frames_dir, encoder, params, args.device, out_dir=args.out,
                            sequences=sequences, alpha=args.alpha, progress=bars, run_info=_run_info(args),
                            propagator=prop)
    bars.close()
    print(badja_table(report))
    common.write_json(args.json, report.to_json_dict())
    _written(args)
    return 0


def davis_table(report, propagation: "dict | None" = None) -> str:
    """The global table (official column names) and one row per object, 3 decimals as officially."""
    g = report.global_table()
    n_obj = sum(len(s.objects) for s in report.sequences)
    lines = []
    if propagation and propagation.get("frames_limit"):
        lines += [f"NOTE: only the first {propagation['frames_limit']} frames of each sequence were used", ""]
    lines += [f"Global results ({len(report.sequences)} sequences, {n_obj} objects, "
              f"{report.n_frames_evaluated} evaluated frames)",
              " ".join(f"{c:>9}" for c in _DAVIS_COLUMNS),
              " ".join(f"{_num(g[c]):>9}" for c in _DAVIS_COLUMNS), ""]
    timing = (propagation or {}).get("sequences", {})
    width = max([len(r["Sequence"]) for r in report.per_object_table()] + [8])
    head = f"{'Sequence':<{width}} {'J&F-Mean':>9} {'J-Mean':>9} {'F-Mean':>9}"
    if timing:
        head += f" {'frames':>7} {'frames/s':>9}"
    lines += ["Per sequence", head]
    for s in report.sequences:
        for k, o in s.objects.items():
            st = o.stats()
            jf = (st["J-Mean"] + st["F-Mean"]) / 2
            row = f"{s.name + '_' + str(k):<{width}} {_num(jf):>9} {_num(st['J-Mean']):>9} {_num(st['F-Mean']):>9}"
            t = timing.get(s.name)
            if t:
                row += f" {t['frames']:>7} {_num(t['frames_per_s'], 2):>9}"
            lines.append(row)
    if timing:
        t = propagation["total"]
        lines += ["", f"propagation: {t['frames']} frames in {t['seconds']:.1f} s "
                      f"({_num(t['frames_per_s'], 2)} frames/s) on {propagation['device']} "
                      f"({propagation['precision']}); wall time {t['wall_seconds']:.1f} s"]
    return "\n".join(lines)


def badja_table(report) -> str:
    key = f"PCK@{report.alpha:g}"
    lines = [f"BADJA {key}: {_num(report.pck)} ({report.n_correct}/{report.n_scored} joints; "
             f"mean over sequences {_num(report.mean_sequence_pck)})", "",
             f"{'Sequence':<16} {key:>9} {'correct':>8} {'scored':>7} {'frames/s':>9}"]
    for s in report.sequences:
        fps = s.n_propagated / s.seconds if s.seconds > 0 else math.nan
        lines.append(f"{s.name:<16} {_num(s.pck):>9} {s.n_correct:>8} {s.n_scored:>7} {_num(fps, 2):>9}")
    for name, why in report.skipped.items():
        lines.append(f"{name:<16} skipped: {why}")
    return "\n".join(lines)


class _Bars:
    """One tqdm bar per phase, fed by the runners' progress(phase, name, done, total) callback."""

    def __init__(self):
        self._bars = {}

    def __call__(self, phase: str, name: str, done: int, total: int) -> None:
        bar = self._bars.get(phase)
        if bar is None:
            unit = "frame" if phase == "propagate" else "seq"
            bar = self._bars[phase] = common.progress(total=total, desc=phase, unit=unit)
        bar.set_postfix_str(name, refresh=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


def _sequence_list(text: "str | None"):
    if text is None:
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ConfigError(None, f"--sequences names no sequence: {text!r}")
    return names


def _run_info(args) -> dict:
    info = {"checkpoint": args.checkpoint, "random_init": bool(args.random_init), "baseline": args.baseline}
    return {k: v for k, v in info.items() if v not in (None, False)}


def _written(args) -> None:
    if args.out:
        print(f"wrote {Path(args.out) / 'results.json'} and results.md", file=sys.stderr)
    if args.json:
        print(f"wrote {args.json}", file=sys.stderr)


def _num(v, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


main = common.entry(parser, _main)

if __name__ == "__main__":
    sys.exit(main())
