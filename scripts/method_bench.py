"""Training throughput (clips/s) and peak memory of every method's model step, one fresh process per
method so that peak memory is that method's alone.

  python scripts/method_bench.py --data DIR --device cpu|cuda [--config gpu] [--steps 5] [--cpu-small]
      [--methods crw jstg ...] [--json OUT.json]

Model step = forward + backward + Adam update through the trainer's own code (`Trainer._forward_backward`,
its autocast and precision) on one real batch of the config's shape drawn once from DIR by the method's
data pipeline (data loading excluded), in the method's last (most expensive) stage: joint localisation
for UVC/ContrastCorr, inter-video bank + compactness for LIIR, node dropout for JSTG.  Median over
`--steps` steps after two warm-ups.  Peak memory: CUDA allocator peak on a GPU; the process's max RSS on
a CPU (model, optimiser, batch and the Python runtime).  `--cpu-small` shrinks every config to a CPU-sized
input (batch 2, 128 px frames) so that a step takes seconds, not minutes, on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ["crw", "jstg", "mast", "liir", "stt_spatial", "stt", "uvc", "contrastcorr"]

# CPU-sized inputs for each method's config (the augment keys differ by pipeline).
CPU_SMALL = {
    "crw": ["augment.frame_size=128", "augment.patch_size=32", "augment.patch_stride=16", "train_layer=layer3"],
    "jstg": ["augment.frame_size=128", "augment.patch_size=32", "augment.patch_stride=16", "train_layer=layer3",
             "data.clip_len=6"],
    "mast": ["augment.frame_size=128"],
    "liir": ["augment.frame_size=128", "loss.bank_frames=64"],
    "stt_spatial": ["augment.frame_size=112", "loss.queue=256"],
    "stt": ["augment.frame_size=128", "loss.radius_fine=6", "loss.radius_coarse=3"],
    "uvc": ["augment.patch_size=128", "augment.target_size=256"],
    "contrastcorr": ["augment.patch_size=128", "augment.target_size=256"],
}


def bench_one(method: str, config: str, data: str, device: str, steps: int, overrides: list[str]) -> dict:
    import torch

    from train.config import load_config
    from train.data import make_loader
    from train.trainer import Trainer, peak_memory

    cfg = load_config(method, config, overrides)
    cfg["train"]["save_initial"] = False
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, data, tmp, device=device, quiet=True)
        tr._setup()
        dev = tr.info.device
        if tr.stages:
            tr.method.set_stage(tr.stages[-1])
        loader = make_loader(tr.dataset, tr.local_batch, 0, 1, 0, 1, 0)
        batch = tr._to_device(next(iter(loader)))
        autocast = (torch.autocast(dev.type, dtype=torch.bfloat16 if tr.precision == "bf16" else torch.float16)
                    if tr.precision != "fp32" else torch.autocast(dev.type, enabled=False))
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times = []
        for i in range(steps + 2):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            tr.opt.zero_grad(set_to_none=True)
            tr._forward_backward(batch, 1, autocast)
            tr.opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= 2:
                times.append(time.perf_counter() - t0)
        s = statistics.median(times)
        b = tr.local_batch
        return {"method": method, "config": config, "overrides": overrides, "device": str(dev),
                "precision": tr.precision, "threads": torch.get_num_threads(), "batch": b,
                "clip_len": int(cfg["data"]["clip_len"]), "s_per_step": round(s, 4), "clips_per_s": round(b / s, 2),
                **{k: round(v, 1) for k, v in peak_memory(dev).items()},
                "load_avg_1min": round(os.getloadavg()[0], 2)}


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", default="gpu")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--cpu-small", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = the config's)")
    p.add_argument("--set", nargs="*", default=[], metavar="key=value", help="config overrides for every method "
                   "that has the key (e.g. autoencoder=PATH)")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--from-json", help="no run: tabulate these rows (a --json file) into BENCHMARKS.md")
    p.add_argument("--section", help="write the table as this section of BENCHMARKS.md")
    p.add_argument("--one", help=argparse.SUPPRESS)   # child process: bench this method, print one JSON row
    a = p.parse_args(argv)
    if a.one:
        extra = (CPU_SMALL[a.one] + ["train.batch_size=2", "train.precision=fp32"]) if a.cpu_small else []
        if a.threads:
            extra.append(f"train.threads={a.threads}")
        from train.config import load_config
        keys = load_config(a.one, a.config)
        extra += [kv for kv in a.set if kv.split("=", 1)[0] in keys]
        print(json.dumps(bench_one(a.one, a.config, a.data, a.device, a.steps, extra)), flush=True)
        return 0
    if a.from_json:
        rows = json.loads(Path(a.from_json).read_text())
        print(table(rows))
        if a.section:
            from scripts.bench_report import write_section
            write_section(a.section, table(rows))
        return 0
    rows = []
    for m in a.methods:
        cmd = [sys.executable, __file__, "--one", m, "--data", a.data, "--device", a.device, "--config", a.config,
               "--steps", str(a.steps), "--threads", str(a.threads), "--set", *a.set] + (["--cpu-small"] if a.cpu_small else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            row = {"method": m, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
        else:
            row = json.loads(r.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    if a.section:
        from scripts.bench_report import write_section
        write_section(a.section, table(rows))
    return 0


def table(rows: list[dict]) -> str:
    ok = [r for r in rows if "error" not in r]
    dev = ok[0]["device"] if ok else "?"
    mem = "peak GPU MB" if dev.startswith("cuda") else "peak RSS MB"
    md = [f"## Training step per method on {'the GPU' if dev.startswith('cuda') else 'this CPU'} (`scripts/method_bench.py`)", "",
          "Forward + backward + Adam through the trainer on one real batch drawn by the method's pipeline from "
          "`../shared/data/train_videos` (data loading excluded), in each recipe's last stage, median of the timed "
          "steps after two warm-ups, one fresh process per method. Inputs: "
          + ("the `*-gpu` configs." if dev.startswith("cuda") else
             "the `*-gpu` configs shrunk to batch 2 at 128 px (`--cpu-small`), fp32 (this CPU has no AMX), 2 torch "
             "threads; peak RSS is the whole process (model, optimiser, batch, runtime); the 1-minute load "
             "average at the time is given (the machine is shared)."), "",
          f"| method | batch x frames | precision | s/step | clips/s | {mem} | load |", "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            md.append(f"| {r['method']} | failed: {r['error'][:80]} | | | | | |")
            continue
        m = r.get("peak_gpu_mb", r.get("peak_rss_mb", 0))
        md.append(f"| {r['method']} | {r['batch']} x {r['clip_len']} | {r['precision']} | {r['s_per_step']:.3f} | "
                  f"{r['clips_per_s']:.2f} | {m:.0f} | {r.get('load_avg_1min', 0):.1f} |")
    return "\n".join(md)


if __name__ == "__main__":
    sys.exit(main())
