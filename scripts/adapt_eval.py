"""Adapt-to-this-video, measured: J&F on DAVIS-2016 and PCK on BADJA of the default model without
and with adaptation, per sequence and overall, per time budget.

  python scripts/adapt_eval.py run --budgets 0,15,60 [--sequences heldout|tune|a,b] [--badja] [--lr X]
  python scripts/adapt_eval.py report --out docs/models/adaptation     # .json + .md

Each (budget, video) adapts the bundled model on that video's frames only (a `VideoSource`: the
adapter never sees a mask), writes the adapted checkpoint and scores it on that one sequence with the
same propagation settings as the baseline (budget 0 = no adaptation).  Results are cached per
(tag, budget, video) under --work, so runs can be split across processes and resumed.  One torch
thread per process: the app's setting (it leaves a core for the UI).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from engine.atomic import write_text  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
DAVIS = SHARED / "davis2016"
BADJA = SHARED / "badja"


def split(name: str) -> list[str]:
    d = json.loads((DAVIS / "sequences.json").read_text())
    tune = list(d.get("tune", []))
    if name == "heldout":
        return [s for s in d["val"] if s not in tune]
    if name == "tune":
        return tune
    return name.split(",")


def badja_sequences() -> dict[str, str]:
    """BADJA sequence -> the DAVIS frame folder it is annotated on."""
    doc = json.loads((BADJA / "joints_480p.json").read_text())
    # `bear` comes from a train_videos clip that `evaluate_badja` does not read (it reads DAVIS frame
    # folders), so it is left out here as in the default model's table.
    return {name: str(DAVIS / name / "JPEGImages") for name, s in doc["sequences"].items()
            if (DAVIS / name / "JPEGImages").is_dir()}


def adapted(work: Path, budget: int, name: str, video_path: str, overrides: "dict | None", seed: int,
            device: str = "cpu"):
    """(encoder, adaptation summary) of the default model adapted on `video_path` for `budget` s."""
    from engine.models import load_encoder
    from engine.video import VideoSource
    from train.adapt import adapt
    if budget == 0:
        return load_encoder(), None
    ckpt = work / f"b{budget}" / f"{name}.pt"
    meta = ckpt.with_suffix(".adapt.json")
    if ckpt.exists() and meta.exists():
        return load_encoder(checkpoint=ckpt), json.loads(meta.read_text())
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    with VideoSource.open(video_path, cache_frames=128) as video:
        load = os.getloadavg()[0]
        res = adapt(video, out=ckpt, seconds=budget, seed=seed, overrides=overrides, device=device)
    summary = {**res.summary(), "load_at_start": load}
    summary.pop("losses")
    write_text(meta, json.dumps(summary, indent=1))
    return res.encoder, summary


def claim(res_file: Path) -> bool:
    """Take (budget, video) for this process, so parallel runs share the work without doubling it."""
    res_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(str(res_file) + ".claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def run(args) -> None:
    import torch
    torch.set_num_threads(1)
    global DAVIS
    DAVIS = Path(args.davis)
    from engine.evaluate import evaluate_badja, evaluate_davis_dataset
    from engine.propagate import PropagationParams
    params = PropagationParams(scale=args.scale)
    work = Path(args.work) / args.tag
    badja = badja_sequences() if args.badja else {}
    davis = split(args.sequences) if args.sequences else []
    videos = {s: str(DAVIS / s / "JPEGImages") for s in davis}
    videos.update({s: p for s, p in badja.items() if s not in videos})
    if args.reverse:
        videos = dict(reversed(list(videos.items())))
    for budget in [int(b) for b in args.budgets.split(",")]:
        for name, path in videos.items():
            res_file = work / f"b{budget}" / f"{name}.scores.json"
            if res_file.exists() or not claim(res_file):
                continue
            t0 = time.time()
            encoder, summary = adapted(work, budget, name, path, json.loads(args.override) if args.override else None,
                                       args.seed, args.device)
            row = {"sequence": name, "budget": budget, "adapt": summary}
            if name in davis:
                rep = evaluate_davis_dataset(DAVIS, encoder, params, args.device, out_dir=work / "masks" / f"b{budget}",
                                             sequences=[name], frames=args.frames)
                g = rep.global_table()
                row["davis"] = {"J": float(g["J-Mean"]), "F": float(g["F-Mean"]), "JF": float(g["J&F-Mean"])}
            if name in badja:
                for alpha in (0.1, 0.2):
                    b = evaluate_badja(BADJA, DAVIS, encoder, params, args.device, sequences=[name], alpha=alpha)
                    row[f"PCK@{alpha}"] = {"correct": b.n_correct, "scored": b.n_scored}
            row["seconds"] = round(time.time() - t0, 1)
            write_text(res_file, json.dumps(row, indent=1))
            print(json.dumps({k: v for k, v in row.items() if k != "adapt"}), flush=True)


def report(args) -> None:
    import numpy as np
    work = Path(args.work) / args.tag
    rows = [json.loads(p.read_text()) for p in sorted(work.glob("b*/*.scores.json"))]
    budgets = sorted({r["budget"] for r in rows})
    by = {(r["budget"], r["sequence"]): r for r in rows}
    held = split("heldout")
    badja = list(badja_sequences())
    doc = {"settings": {"scale": args.scale, "tag": args.tag, "threads": 1, "model": "resources/models/default.pt"},
           "rows": rows}
    lines = [args.describe or (
             f"DAVIS-2016 held-out val (15 sequences outside the `tune` split), J&F per sequence; "
             f"propagation at scale {args.scale} (the app's CPU default), CRW protocol of the default model; "
             "adaptation: one torch thread, budget = wall seconds from loading the checkpoint to the adapted "
             "model (steps = optimiser steps that fitted)."), "",
             "| sequence | " + " | ".join("no adaptation" if b == 0 else f"{b} s" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    means = {}
    for s in held:
        cells = []
        for b in budgets:
            r = by.get((b, s))
            if r is None or "davis" not in r:
                cells.append("–")
                continue
            base = by.get((0, s))
            d = r["davis"]["JF"] - base["davis"]["JF"] if base and b else None
            steps = f", {r['adapt']['steps']} steps" if r.get("adapt") else ""
            cells.append(f"{r['davis']['JF']:.3f}" + (f" ({d:+.3f}{steps})" if d is not None else ""))
            means.setdefault(b, []).append(r["davis"]["JF"])
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | " + " | ".join(
        f"**{np.mean(means[b]):.3f}** (n={len(means[b])})" if b in means else "–" for b in budgets) + " |")
    paired = {b: [by[(b, s)]["davis"]["JF"] - by[(0, s)]["davis"]["JF"] for s in held
                  if (b, s) in by and (0, s) in by and "davis" in by[(b, s)]] for b in budgets if b}
    steps = {b: [by[(b, s)]["adapt"]["steps"] for s in held + badja if (b, s) in by and by[(b, s)].get("adapt")]
             for b in budgets if b}
    lines.append("| **mean change** (same sequences) | | " + " | ".join(
        f"**{np.mean(paired[b]):+.3f}** (median steps {np.median(steps[b]):.0f})" if paired.get(b) else "–"
        for b in budgets if b) + " |")
    wins = {b: sum(1 for s in held if (b, s) in by and (0, s) in by and "davis" in by[(b, s)]
                   and by[(b, s)]["davis"]["JF"] > by[(0, s)]["davis"]["JF"]) for b in budgets if b}
    losses = {b: sum(1 for s in held if (b, s) in by and (0, s) in by and "davis" in by[(b, s)]
                     and by[(b, s)]["davis"]["JF"] < by[(0, s)]["davis"]["JF"]) for b in budgets if b}
    lines += ["", "Sequences improved / worse than without adaptation: " +
              ", ".join(f"{b} s: {wins[b]} / {losses[b]}" for b in wins), ""]
    lines += ["BADJA (the 4 sequences on DAVIS frames; joints propagated from the first annotated frame), PCK pooled over all scored "
              "joints:", "", "| sequence | " + " | ".join("no adaptation" if b == 0 else f"{b} s" for b in budgets)
              + " |", "|---|" + "---|" * len(budgets)]
    pooled = {}
    for s in badja + ["all"]:
        cells = []
        for b in budgets:
            rs = [by.get((b, q)) for q in (badja if s == "all" else [s])]
            if any(r is None or "PCK@0.2" not in r for r in rs):
                cells.append("–")
                continue
            vals = []
            for a in ("0.1", "0.2"):
                c = sum(r[f"PCK@{a}"]["correct"] for r in rs)
                n = sum(r[f"PCK@{a}"]["scored"] for r in rs)
                vals.append(c / n if n else float("nan"))
            cells.append(f"{vals[0]:.3f} / {vals[1]:.3f}")
            if s == "all":
                pooled[b] = vals
        lines.append(f"| {'**all**' if s == 'all' else s} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: PCK@0.1 / PCK@0.2."]
    doc["summary"] = {"davis_heldout_mean": {str(b): float(np.mean(v)) for b, v in means.items()},
                      "davis_heldout_mean_change": {str(b): float(np.mean(v)) for b, v in paired.items() if v},
                      "improved": wins, "worse": losses, "badja_pck": {str(b): v for b, v in pooled.items()}}
    out = Path(args.out)
    metas = [r["adapt"] for r in rows if r.get("adapt")]
    per_step = [m["seconds"] / m["steps"] for m in metas if m["steps"]]
    loads = [m.get("load_at_start", float("nan")) for m in metas]
    bench = ["## Adapt to this video (`python scripts/adapt_eval.py`)", "",
             f"The default model adapted with `train/configs/adapt.json` (whole 256x256 frames, batch 2 clips of 4 "
             f"frames, fp32 on this CPU without AMX), one torch thread per run, two runs at a time on the 2 cores "
             f"plus other work (1-minute load at the start of a run: median {np.nanmedian(loads):.1f}).", "",
             "| budget | runs | optimiser steps (median, min-max) | wall seconds per step incl. loading (median) |",
             "|---|---|---|---|"]
    for b in budgets:
        ms = [r["adapt"] for r in rows if r["budget"] == b and r.get("adapt")]
        if ms:
            st = [m["steps"] for m in ms]
            bench.append(f"| {b} s | {len(ms)} | {np.median(st):.0f} ({min(st)}-{max(st)}) | "
                         f"{np.median([m['seconds'] / max(1, m['steps']) for m in ms]):.2f} |")
    bench += ["", f"Over all runs: {np.median(per_step):.2f} s per step (median). Memory: the adapter holds the "
              "model, Adam state and one batch (peak RSS of an adapt_eval process about 1.2-1.6 GB including "
              "the evaluation). Quality: `docs/models/adaptation.md`."]
    if not args.no_bench:
        sys.path.insert(0, str(REPO / "scripts"))
        from bench_report import write_section
        write_section("adapt", "\n".join(bench))
    write_text(out.with_suffix(".json"), json.dumps(doc, indent=1) + "\n")
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["run", "report"])
    ap.add_argument("--budgets", default="0,15,60,240")
    ap.add_argument("--sequences", default="heldout", help="heldout, tune, or a,b,c ('' for none)")
    ap.add_argument("--badja", action="store_true", help="also the 5 BADJA videos (PCK)")
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--override", default=None, help='JSON merged over the adapt config, e.g. {"optim": {"lr": 1e-4}}')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--davis", default=str(DAVIS), help="DAVIS-2016 folder (run mode)")
    ap.add_argument("--frames", type=int, default=None, help="score only the first N frames (run mode)")
    ap.add_argument("--describe", help="the report's opening sentence (report mode; default: the CPU setting)")
    ap.add_argument("--no-bench", action="store_true", help="leave BENCHMARKS.md alone (report mode)")
    ap.add_argument("--reverse", action="store_true", help="videos in reverse order (a second process)")
    ap.add_argument("--tag", default="default")
    ap.add_argument("--work", default="/tmp/adapt_eval")
    ap.add_argument("--out", default=str(REPO / "docs" / "models" / "adaptation"))
    args = ap.parse_args()
    run(args) if args.mode == "run" else report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
