"""Tune the propagation parameters of a model on the DAVIS-2016 `tune` split only (coordinate descent).

  python scripts/tune_propagation.py --checkpoint RUN/checkpoint_last.pt --out docs/models/tuning.json \\
      [--work /tmp/tune] [--frames N]

The split comes from `davis2016/sequences.json` ("tune": every fourth val sequence): no annotated DAVIS
training sequence exists in ../shared, so the other 15 val sequences stay held out for the report.
Starting from the CRW protocol (k 10, m 20, tau 0.05; radius: see START) at the CPU scale 0.5, each
parameter in turn takes the value of its grid with the best tune-split J&F, the others held at their
current best (a best value at the edge of its grid gets one more step outwards); then the native
resolution is tried with the chosen values.  Every evaluation is one
`affinity-evaluate` run (`model_table.evaluate`), cached under --work with its options, so an
interrupted tuning resumes.
The result (every trial and the chosen values) goes to --out as JSON and Markdown.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
from engine.atomic import write_text  # noqa: E402
from model_table import evaluate as run_evaluate  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
# Radius in feature cells at scale 1 (the engine searches radius x scale cells at a preview scale).  The
# start is what the engine did at scale 0.5 before the radius followed the scale: CRW's 12 cells on the
# half-resolution grid, i.e. 24 at scale 1.
START = {"topk": 10, "temperature": 0.05, "context": 20, "radius": 24.0, "scale": 0.5}
GRID = {"topk": [5, 10, 20], "temperature": [0.02, 0.05, 0.1], "context": [10, 20], "radius": [16.0, 24.0, 32.0]}
FLAGS = {"topk": "--topk", "temperature": "--temperature", "context": "--context", "radius": "--radius",
         "scale": "--scale"}


def key(p: dict) -> str:
    return "_".join(f"{k}{p[k]:g}" for k in sorted(p))


def evaluate(model: list[str], p: dict, a, seqs: list[str]) -> dict:
    args = [a.davis, *model, "--sequences", ",".join(seqs), *[x for k in sorted(p) for x in (FLAGS[k], f"{p[k]:g}")]]
    args += ["--frames", str(a.frames)] if a.frames else []
    g = run_evaluate(args, Path(a.work) / key(p), reuse=True)
    return {"params": dict(p), **{c: g["global"][c] for c in ("J&F-Mean", "J-Mean", "F-Mean")},
            "frames_per_s": g.get("propagation", {}).get("total", {}).get("frames_per_s")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--davis", default=str(SHARED / "davis2016"))
    ap.add_argument("--work", default="/tmp/tune_propagation")
    ap.add_argument("--frames", type=int, default=None, help="first N frames per sequence (quick runs)")
    ap.add_argument("--no-native", action="store_true", help="skip the native-resolution trial")
    ap.add_argument("--note", default="", help="a sentence added under the table (how the trials were run)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    seqs = json.loads((Path(a.davis) / "sequences.json").read_text())["tune"]
    model = ["--checkpoint", a.checkpoint]

    trials: list[dict] = []
    seen: dict[str, dict] = {}

    def trial(p: dict) -> dict:
        k = key(p)
        if k not in seen:
            seen[k] = evaluate(model, p, a, seqs)
            trials.append(seen[k])
            print(json.dumps(seen[k]), flush=True)
        return seen[k]

    best = dict(START)
    trial(best)
    for name, values in GRID.items():
        scored = [trial({**best, name: v}) for v in values]
        top = max(scored, key=lambda t: t["J&F-Mean"])["params"][name]
        if top in (values[0], values[-1]) and name != "context":   # best at an edge: one step further
            step = (values[1] - values[0]) / 2 if top == values[0] else (values[-1] - values[-2])
            further = top - step if top == values[0] else top + step
            if further > 0:
                scored.append(trial({**best, name: type(top)(further)}))
        best = dict(max(scored, key=lambda t: t["J&F-Mean"])["params"])
    chosen = trial(best)
    if not a.no_native:
        native = trial({**best, "scale": 1.0})
    doc = {"checkpoint": str(Path(a.checkpoint).resolve()), "sequences": seqs, "frames": a.frames,
           "start": START, "grid": GRID, "chosen": chosen, "native": None if a.no_native else native,
           "trials": trials}
    write_text(a.out, json.dumps(doc, indent=1) + "\n")
    f = (lambda v: "–" if v is None else f"{v:.3f}")
    lines = [f"Tune split ({', '.join(seqs)}), {'all' if not a.frames else f'first {a.frames}'} frames; "
             "coordinate descent at scale 0.5 from CRW's values with the radius the engine used to keep at previews "
             "(12 cells of the half-resolution grid = 24 at scale 1), in the order k, tau, m, r (an edge winner "
             "gets one more step outwards); then native resolution with the chosen values. r is in feature "
             "cells at scale 1 (r x 0.5 cells are searched at scale 0.5).", "",
             "| k | tau | m | r | scale | J&F | J | F | frames/s |", "|---|---|---|---|---|---|---|---|---|"]
    for t in trials:
        p = t["params"]
        mark = " **(chosen)**" if t is chosen else ""
        lines.append(f"| {p['topk']:g} | {p['temperature']:g} | {p['context']:g} | {p['radius']:g} | {p['scale']:g} | "
                     f"{f(t['J&F-Mean'])}{mark} | {f(t['J-Mean'])} | {f(t['F-Mean'])} | {f(t['frames_per_s'])} |")
    if a.note:
        lines += ["", a.note]
    write_text(Path(a.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
