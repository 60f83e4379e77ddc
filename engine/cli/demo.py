"""affinity-demo: propagate the bundled demo clip (procedurally rendered) and score it.

Until the desktop app exists this is what the README's first command runs: it shows the engine
working end to end on a clip that ships with the project, writes the masks and an overlay strip,
and prints J&F against the clip's exact ground truth.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import common

DEMO = Path(__file__).resolve().parents[2] / "resources" / "demo"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affinity-demo", description=__doc__)
    p.add_argument("--out", default="demo-output", help="where masks and the overlay strip go")
    p.add_argument("--frames", type=int, default=None, help="propagate only this many frames")
    common.add_run_args(p)
    return p


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    from ..labels import PALETTE
    out = frame.astype(np.float32)
    fg = mask > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * PALETTE[mask[fg]]
    return out.astype(np.uint8)


def _encoder(args):
    from ..models import default_checkpoint_path, random_encoder
    if args.checkpoint or args.model or args.random_init or default_checkpoint_path().exists():
        return common.encoder_from_args(args), False
    return random_encoder("crw-r18-s8"), True


def _main(args) -> int:
    from PIL import Image

    from .. import atomic
    from ..labels import read_mask, write_mask
    from ..metrics import db_eval_boundary, db_eval_iou
    from ..propagate import Propagator
    from ..video import VideoSource

    video = VideoSource.open(DEMO / "demo.mp4")
    mask = read_mask(DEMO / "demo_mask_00000.png", size=video.size)
    encoder, untrained = _encoder(args)
    if untrained:
        print("note: no trained model is bundled yet; using seeded random weights (quality will be low)",
              file=sys.stderr)
    prop = Propagator(encoder, common.params_from_args(args), device=args.device)
    stop = len(video) if args.frames is None else min(args.frames, len(video))
    j_scores, f_scores, strip = [], [], []
    t0 = time.perf_counter()
    with atomic.staged_dir(args.out) as stage:
        for r in common.progress(prop.run(video, {0: mask}, start=0, stop=stop), total=stop, desc="demo", unit="frame"):
            write_mask(stage / "masks" / f"{r.index:05d}.png", r.mask)
            gt = read_mask(DEMO / "demo_masks" / f"{r.index:05d}.png")
            if r.index > 0:
                for o in range(1, int(mask.max()) + 1):
                    j_scores.append(db_eval_iou(gt == o, r.mask == o))
                    f_scores.append(db_eval_boundary(gt == o, r.mask == o))
            if r.index % max(1, stop // 4) == 0 or r.index == stop - 1:
                strip.append(overlay(video.frame(r.index), r.mask)[::2, ::2])
        Image.fromarray(np.concatenate(strip, 0)).save(stage / "overlay_strip.png")
    elapsed = time.perf_counter() - t0
    summary = {"frames": stop, "seconds": round(elapsed, 2), "fps": round(stop / elapsed, 2),
               "J-Mean": float(np.mean(j_scores)) if j_scores else None,
               "F-Mean": float(np.mean(f_scores)) if f_scores else None,
               "model": encoder.spec.name + (" (random weights)" if untrained else ""), "out": args.out}
    common.write_json(args.json, summary)
    print(f"demo: {stop} frames in {elapsed:.1f} s ({summary['fps']} frames/s); "
          f"J {summary['J-Mean']:.3f}, F {summary['F-Mean']:.3f} vs the clip's ground truth; "
          f"masks and overlay_strip.png in {args.out}/")
    return 0


main = common.entry(parser, _main)

if __name__ == "__main__":
    sys.exit(main())
