"""Does `torchrun --nproc_per_node 2` (gloo, CPU) follow the same loss curve as one process with the
same global batch?  Runs both on the same data and prints the per-step losses and differences.

  python scripts/train_ddp_check.py --data ../shared/data/train_videos --out /tmp/ddp [--steps 6]
      [--method crw] [--batch 4]

Both runs see exactly the same clips per step (the sampler slices global sample indices) and the
same edge-dropout draws (seeded per sample); what differs is BatchNorm, whose batch statistics are
per process (half the batch each) — the only source of the gap, as in any DDP run without
SyncBatchNorm.  A third run, one process with `train.accumulate=2` (two micro-batches of half the
batch, gradients averaged), has DDP's BatchNorm grouping: it must match the 2-process run up to float
summation order, which isolates BatchNorm as the cause of the 1-vs-2-process gap.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd, env):
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=REPO)


def losses(run_dir: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [(r["step"], r["loss"], r.get("walk_accuracy")) for r in rows if "loss" in r]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "train_videos"))
    p.add_argument("--out", required=True)
    p.add_argument("--method", default="crw")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=4)
    a = p.parse_args(argv)
    out = Path(a.out)
    common = ["--method", a.method, "--data", a.data, "--config", "smoke", "--max-steps", str(a.steps),
              "--resume", "never", f"train.batch_size={a.batch}", "train.log_every=1",
              f"train.ckpt_every={a.steps}", "train.save_initial=false", "data.num_workers=0",
              "train.precision=fp32", "train.threads=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run([sys.executable, "-m", "train.cli", *common, "--out", str(out / "single")], env)
    run([sys.executable, "-m", "train.cli", *common, "train.accumulate=2", "--out", str(out / "accum2")], env)
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "train.cli", *common, "--out", str(out / "ddp2")], env)
    s, c, d = losses(out / "single"), losses(out / "accum2"), losses(out / "ddp2")
    print(f"{'step':>4} {'1 proc':>10} {'2 procs':>10} {'rel diff':>9} {'1 proc acc2':>12} {'|2p - acc2|':>12}")
    worst = worst_acc = 0.0
    for (st, l1, _), (_, la, _), (_, l2, _) in zip(s, c, d):
        rel = abs(l1 - l2) / abs(l1)
        worst, worst_acc = max(worst, rel), max(worst_acc, abs(l2 - la))
        print(f"{st:>4} {l1:>10.5f} {l2:>10.5f} {rel:>9.2%} {la:>12.6f} {abs(l2 - la):>12.2e}")

    import numpy as np
    import torch

    def params(run):
        sd = torch.load(out / run / "checkpoint_last.pt", weights_only=True)["train_state"]["model"]
        return {k: v.float() for k, v in sd.items() if v.is_floating_point() and "running_" not in k}
    p1, pa, p2 = params("single"), params("accum2"), params("ddp2")
    diff = lambda x, y: max(float((x[k] - y[k]).abs().max()) for k in x)
    n = min(len(s), len(d))
    half = max(1, n // 2)
    print(json.dumps({
        "steps": n, "global_batch": a.batch,
        "max_rel_loss_diff_1proc_vs_2proc": worst,
        "mean_loss_second_half_1proc": float(np.mean([x[1] for x in s[half:n]])),
        "mean_loss_second_half_2proc": float(np.mean([x[1] for x in d[half:n]])),
        "step_to_step_loss_std_1proc": float(np.std(np.diff([x[1] for x in s[:n]]))),
        "max_abs_loss_diff_2proc_vs_accum2": worst_acc,
        "max_abs_param_diff_1proc_vs_2proc": diff(p1, p2),
        "max_abs_param_diff_2proc_vs_accum2": diff(pa, p2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
