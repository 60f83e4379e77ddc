"""Encoder speed per precision/layout on this machine: median ms per frame at 854x480.

    python scripts/bench_features.py [--threads 2] [--repeats 5] [--model crw-r18-s8]

Uses the golden CRW weights and a real frame when ../shared is present (random weights and a
synthetic frame otherwise; speed does not depend on the values).  Each configuration goes through
`FeatureExtractor.extract`, i.e. the path propagation uses, and is also compared with fp32 on the
same frame (per-cell cosine similarity of the returned float32 features).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.features import FeatureExtractor, cpu_has_fast_bf16, resize_frame  # noqa: E402
from engine.models import load_encoder, random_encoder  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden" / "crw_propagation"


def frame_and_encoder(model: str):
    jpg, weights = GOLDEN / "inputs/blackswan/JPEGImages/00000.jpg", GOLDEN / "encoder_seed0.pt"
    if model == "crw-r18-s8" and jpg.exists() and weights.exists():
        from PIL import Image
        rgb = np.asarray(Image.open(jpg).convert("RGB"))
        return resize_frame(rgb, (854, 480)), (lambda: load_encoder(weights, model=model)), "golden seed-0 weights"
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (480, 854, 3), dtype=np.uint8)
    return rgb, (lambda: random_encoder(model)), "random weights"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default="crw-r18-s8")
    ap.add_argument("--batches", default="1,4")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    frame, make, what = frame_and_encoder(args.model)
    configs = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True), ("fp16", True)]
    print(f"load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}, {args.threads} threads, model {args.model} ({what}), 854x480, "
          f"native bf16: {cpu_has_fast_bf16()}, median of {args.repeats}")
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        frames = [frame] * batch
        fxs, outs, times, cpu = [], [], [], []
        for precision, cl in configs:
            fx = FeatureExtractor(make(), device="cpu", precision=precision, batch_size=batch,
                                  cache_mb=0, channels_last=cl)
            outs.append(fx.extract(frames[:1]))     # warm-up (oneDNN primitive creation) + accuracy
            fx.extract(frames)
            fxs.append(fx)
            times.append([])
            cpu.append([])
        # Round-robin over the configurations, so a burst of load from other processes on this
        # shared machine hits all of them alike instead of one.
        for _ in range(args.repeats):
            for fx, t, c in zip(fxs, times, cpu):
                t0, c0 = time.perf_counter(), time.process_time()
                fx.extract(frames)
                t.append((time.perf_counter() - t0) * 1e3 / batch)
                c.append((time.process_time() - c0) * 1e3 / batch)
        ref = outs[0]
        for (precision, cl), out, t, c in zip(configs, outs, times, cpu):
            cos = (out * ref).sum(1).flatten()       # both L2-normalised per cell
            rows.append((batch, precision, "channels_last" if cl else "NCHW", statistics.median(t), min(t),
                         statistics.median(c), cos.min().item(), cos.mean().item(), (out - ref).abs().max().item()))
            print(f"  batch {batch} {precision:<5} {rows[-1][2]:<13} median {rows[-1][3]:8.1f}  "
                  f"min {rows[-1][4]:8.1f}  cpu {rows[-1][5]:8.1f} ms/frame", flush=True)
    base = {b: r[3] for r in rows for b in [r[0]] if r[1] == "fp32" and r[2] == "NCHW"}
    print()
    # CPU time (all threads) is less sensitive than wall time to other processes on a shared
    # machine; under no load it is about threads x wall time.
    print(f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print("| batch | precision | layout | median ms/frame | min ms/frame | CPU ms/frame (median) "
          "| speed-up vs fp32 NCHW (median) | cos min | cos mean | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b, p, lay, med, mn, cm, cmin, cmean, mad in rows:
        print(f"| {b} | {p} | {lay} | {med:.1f} | {mn:.1f} | {cm:.1f} | {base[b] / med:.2f}x | {cmin:.5f} "
              f"| {cmean:.6f} | {mad:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
