"""J&F of training checkpoints on DAVIS with one fixed, stated protocol (before/after comparisons).

  python scripts/train_eval.py CHECKPOINT [CHECKPOINT ...] --davis ../shared/data/davis2016 \
      --out RESULTS_DIR [--scale 0.5] [--frames 30] [--sequences heldout] [--threads 1] [--device cpu]

Every checkpoint goes through `engine.models.load_encoder` (exactly what the engine opens) and
`engine.evaluate.evaluate_davis_dataset` with `PropagationParams(scale=...)` and the CRW protocol
defaults otherwise (top-k 10, context 20, radius 12, τ 0.05); `--frames N` propagates and scores
only the first N frames of each sequence.  `heldout` = sequences.json's val list minus its tune
split.  Writes RESULTS_DIR/<checkpoint stem>/ (predictions, results.json/.md) and prints one JSON
line per checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--davis", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016"))
    p.add_argument("--out", required=True)
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--sequences", default="heldout")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="auto")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--protocol", help="override the checkpoint's inference protocol (diagnostics)")
    p.add_argument("--l2", action="store_true", help="L2-normalise the features whatever the spec says (diagnostics)")
    a = p.parse_args(argv)

    import torch
    torch.set_num_threads(a.threads)
    from engine.evaluate import evaluate_davis_dataset
    from engine.models import load_encoder
    from engine.models.checkpoints import read_checkpoint
    from engine.propagate import PropagationParams
    from train.trainer import heldout_sequences

    seqs = heldout_sequences(Path(a.davis), a.sequences if a.sequences in ("heldout", "tune", "val")
                             else a.sequences.split(","))
    params = PropagationParams(scale=a.scale, precision=a.precision, protocol=a.protocol)
    for ck in a.checkpoints:
        ck = Path(ck)
        meta = read_checkpoint(ck)
        enc = load_encoder(checkpoint=ck)
        if a.l2:
            enc.spec = dataclasses.replace(enc.spec, l2_normalize=True)
        t0 = time.perf_counter()
        tag = (f"-{a.protocol}" if a.protocol else "") + ("-l2" if a.l2 else "")
        rep = evaluate_davis_dataset(a.davis, enc, params, a.device, out_dir=Path(a.out) / f"{ck.parent.name}-{ck.stem}{tag}",
                                     sequences=seqs, frames=a.frames, run_info={"checkpoint": str(ck)})
        row = {"checkpoint": str(ck), "method": meta["method"], "step": meta["step"],
               **{k: round(float(v), 4) for k, v in rep.global_table().items()},
               "sequences": len(rep.sequences), "frames_per_sequence": a.frames, "scale": a.scale,
               "precision": rep.propagation["precision"], "device": a.device, "protocol": a.protocol, "l2": a.l2, "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
