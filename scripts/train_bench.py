"""Training throughput (clips/s) of the CRW/JSTG configs on this machine; writes the "train"
section of BENCHMARKS.md through scripts/bench_report.py.

  python scripts/train_bench.py [--steps 4] [--threads 1 2] [--precisions fp32 bf16] [--runs RUN_DIR ...]
      [--no-write]

Model step = forward + backward + Adam update on a fixed batch of the config's shape (data loading
excluded; the median over `--steps` steps after one warm-up).  `--runs` adds the end-to-end clips/s
that long training runs logged (data loading in a worker included; median of their metrics rows).
The load average is recorded with each figure: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench_config(method: str, config: str, threads: int, precision: str, steps: int) -> dict:
    import torch
    from train.config import load_config
    from train.methods import get_method
    from train.augment import grid_side

    torch.set_num_threads(threads)
    cfg = load_config(method, config)
    torch.manual_seed(0)
    model = get_method(method)(cfg).train()
    if method == "jstg":
        model.set_stage({"node_dropout": True})
    a = cfg["augment"]
    n = grid_side(a["frame_size"], a["patch_size"], a["patch_stride"]) ** 2
    b, t, p = cfg["train"]["batch_size"], cfg["data"]["clip_len"], a["patch_size"]
    batch = {"clips": torch.randn(b, t, n, 3, p, p), "seed": torch.arange(b)}
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
        with ctx:
            out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    return {"config": f"{method}-{config}", "threads": threads, "precision": precision, "batch": b,
            "frames_per_clip": t, "nodes": n, "patch": p, "s_per_step": s, "clips_per_s": b / s,
            "load_avg_1min": os.getloadavg()[0]}


def run_rows(run: Path) -> dict:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    tr = [r for r in rows if r.get("kind") != "eval" and r.get("clips_per_s")]
    cfg = json.loads((run / "config.json").read_text())
    return {"run": run.name, "config": cfg.get("config_file"), "steps": tr[-1]["step"],
            "clips_per_s_median": statistics.median(r["clips_per_s"] for r in tr),
            "threads": cfg["train"].get("threads"), "precision": cfg["train"].get("precision")}


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--runs", nargs="*", default=[])
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    rows = []
    for method in ("crw", "jstg"):
        for th in a.threads:
            for prec in a.precisions:
                r = bench_config(method, "cpu", th, prec, a.steps)
                print(json.dumps(r), flush=True)
                rows.append(r)
    runs = [run_rows(Path(r)) for r in a.runs]
    for r in runs:
        print(json.dumps(r))
    import torch
    md = ["## Training throughput (CPU)", "",
          f"Written by `scripts/train_bench.py` (torch {torch.__version__}, {os.cpu_count()} cores, no GPU). "
          "Model step = forward + backward + Adam on a fixed batch of the `*-cpu` config's shape "
          f"(7x7 nodes of 32 px from 128 px frames, ResNet-18 to layer3), median of {a.steps} steps after a warm-up; "
          "data loading excluded. The 1-minute load average at the time is given: the machine was shared with "
          "other work, so these are lower bounds of what an idle machine gives; with the 2 cores oversubscribed, "
          "2 torch threads can come out slower than 1 (that is the load, not the code).", "",
          "| config | batch x frames | threads | precision | s/step | clips/s | load avg |", "|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['config']} | {r['batch']} x {r['frames_per_clip']} | {r['threads']} | {r['precision']} | "
                  f"{r['s_per_step']:.2f} | {r['clips_per_s']:.2f} | {r['load_avg_1min']:.1f} |")
    if runs:
        md += ["", "End to end in the long CPU runs (data decoding in one DataLoader worker, logged clips/s, median "
                   "over the run; two runs side by side plus other users on 2 cores):", "",
               "| run | config | steps | threads | precision | clips/s |", "|---|---|---:|---:|---|---:|"]
        for r in runs:
            md.append(f"| {r['run']} | {r['config']} | {r['steps']} | {r['threads']} | {r['precision']} | "
                      f"{r['clips_per_s_median']:.2f} |")
    md += ["", "GPU: see the `families` section (one H200, every method)."]
    if not a.no_write:
        from scripts.bench_report import write_section
        write_section("train", "\n".join(md))
        print("wrote the train section of BENCHMARKS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
