"""affinity-adapt: fine-tune a model's affinity on one video (its own frames only, no labels).

  affinity-adapt VIDEO --out ADAPTED.pt [--checkpoint IN.pt] [--seconds 60 | --steps N]
                 [--device auto|cpu|cuda] [--seed 0] [--threads N] [--json RESULT.json]

The checkpoint (default: the bundled model) is trained further with the self-supervised loss of the
method that made it, on clips sampled from VIDEO, for a wall-time budget (default 60 s on CPU, 15 s
on a GPU) or exactly N steps (bit-identical for a seed).  ADAPTED.pt is in our checkpoint format:
`affinity-propagate --checkpoint ADAPTED.pt` and the app open it.  The input is never modified.
"""
from __future__ import annotations

import argparse
import sys
import time

from engine.cli import common


def default_seconds(device: str) -> float:
    import torch
    gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return 15.0 if gpu else 60.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affinity-adapt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", help="video file or image folder")
    p.add_argument("--out", required=True, help="adapted checkpoint to write (atomically)")
    p.add_argument("--checkpoint", help="checkpoint to adapt (default: the bundled model)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, help="wall-time budget (default 60 on CPU, 15 on a GPU)")
    budget.add_argument("--steps", type=int, help="exactly N optimiser steps instead of a time budget")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--json", help="write the result summary here")
    return p


class PrintProgress:
    """A line on stderr every few seconds (a log, not a terminal animation)."""

    def __init__(self, every: float = 5.0):
        self.every, self.last = every, 0.0

    def __call__(self, p) -> None:
        if time.perf_counter() - self.last >= self.every:
            self.last = time.perf_counter()
            left = f", {max(0.0, p.budget - p.elapsed):.0f} s left" if p.budget else ""
            print(f"step {p.step}: loss {p.loss:.4f}, {p.elapsed:.0f} s{left}", file=sys.stderr, flush=True)


def _main(args) -> int:
    import torch

    from engine.video import VideoSource

    from .adapt import adapt
    if args.threads:
        torch.set_num_threads(args.threads)
    seconds = None if args.steps is not None else (args.seconds or default_seconds(args.device))
    with VideoSource.open(args.video) as video:
        res = adapt(video, checkpoint=args.checkpoint, out=args.out, seconds=seconds, steps=args.steps,
                    device=args.device, seed=args.seed, progress=PrintProgress())
    summary = res.summary()
    common.write_json(args.json, summary)
    print(f"adapted {res.method} for {res.steps} steps in {res.seconds:.1f} s: probe loss "
          f"{res.loss_before:.4f} -> {res.loss_after:.4f}; wrote {args.out}", file=sys.stderr)
    return 0


main = common.entry(parser, _main)

if __name__ == "__main__":
    sys.exit(main())
