"""affinity-train: self-supervised training of a correspondence encoder.

  affinity-train --method crw|jstg --data DIR [--val DAVIS_DIR] --out RUN_DIR
                 [--config NAME_OR_FILE] [--max-steps N] [key=value ...]

Config names: the method's paper defaults (no --config), `cpu` (about an hour on 2 CPU cores),
`smoke` (a few minutes), or a JSON file.  Overrides are dotted keys, e.g. `loss.temperature=0.07
train.batch_size=16`.  RUN_DIR gets config.json, metrics.jsonl, checkpoint_last.pt and numbered
checkpoints; a RUN_DIR that already holds checkpoint_last.pt is resumed (--resume never starts over).
Multi-GPU / multi-node: `torchrun --nproc_per_node N -m train.cli ...` (batch_size is global).
"""
from __future__ import annotations

import argparse
import sys

from engine.cli import common


def parser() -> argparse.ArgumentParser:
    from .methods import method_names
    p = argparse.ArgumentParser(prog="affinity-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True, choices=method_names())
    p.add_argument("--data", required=True, help="folder of videos and/or frame folders (searched recursively)")
    p.add_argument("--val", help="DAVIS-format folder for periodic evaluation (train.eval_every steps)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--config", help="config name (smoke, cpu, ...) or JSON file; default: the paper's")
    p.add_argument("--max-steps", type=int, help="stop after N optimiser steps (overrides the config)")
    p.add_argument("--max-seconds", type=float,
                   help="wall-clock budget of the training loop: stop when spent; stages and lr advance by the "
                        "fraction spent (matched-compute comparisons)")
    p.add_argument("--resume", default="auto", help="auto (continue RUN_DIR/checkpoint_last.pt if present), "
                                                    "never, or a checkpoint path")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, help="torch threads per process (overrides train.threads)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    return p


def _main(args) -> int:
    import json

    from .config import load_config
    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.threads is not None:
        overrides.append(f"train.threads={args.threads}")
    if args.max_seconds is not None:
        overrides.append(f"train.max_seconds={args.max_seconds}")
    cfg = load_config(args.method, args.config, overrides)
    if args.print_config:
        print(json.dumps(cfg, indent=1))
        return 0
    from .trainer import Trainer
    last = Trainer(cfg, args.data, args.out, val=args.val, resume=args.resume, device=args.device).run()
    if last:
        print(json.dumps({k: v for k, v in last.items() if k != "time"}), file=sys.stderr)
    return 0


main = common.entry(parser, _main)

if __name__ == "__main__":
    sys.exit(main())
