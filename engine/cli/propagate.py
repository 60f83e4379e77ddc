"""affinity-propagate: carry a first-frame mask or keypoints through a video, headless."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import atomic
from ..errors import ConfigError, LabelError
from . import common


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affinity-propagate", description=__doc__)
    p.add_argument("video", help="video file or image folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--mask", help="index PNG of the keyframe (0 = background, 1..255 = objects)")
    src.add_argument("--keypoints", help="keypoint JSON of the keyframe")
    p.add_argument("--frame", type=int, default=0, help="index of the labelled frame (default 0)")
    p.add_argument("--out", required=True, help="output folder (replaced as a whole when the run succeeds)")
    p.add_argument("--backward", action="store_true", help="propagate towards the start instead of the end")
    p.add_argument("--both", action="store_true", help="propagate in both directions")
    p.add_argument("--stop", type=int, default=None,
                   help="stop before this frame (forward) or after it (backward); default: the video's end")
    p.add_argument("--adapt-seconds", type=float, default=None,
                   help="first adapt the model to this video for N seconds (self-supervised, its frames only)")
    p.add_argument("--adapt-out", help="with --adapt-seconds: also keep the adapted checkpoint here")
    common.add_run_args(p)
    return p


def _main(args) -> int:
    from ..labels import read_keypoints, read_mask, write_mask, keypoints_to_dict
    from ..models import default_checkpoint_path
    from ..propagate import Propagator
    from ..video import VideoSource

    video = VideoSource.open(args.video)
    if not 0 <= args.frame < len(video):
        raise LabelError(args.mask or args.keypoints, f"--frame {args.frame} is outside the video (0..{len(video) - 1})")
    if args.mask:
        label = read_mask(args.mask, size=video.size)
        schema = None
    else:
        schema, label = read_keypoints(args.keypoints, size=video.size)
    adaptation = None
    if args.adapt_seconds:
        if args.random_init:
            raise ConfigError(None, "--adapt-seconds needs a trained checkpoint, not --random-init")
        from train.adapt import adapt    # training code, only needed here
        res = adapt(video, checkpoint=args.checkpoint, out=args.adapt_out, seconds=args.adapt_seconds,
                    device=args.device)
        encoder, adaptation = res.encoder, res.summary()
    else:
        encoder = common.encoder_from_args(args)
    prop = Propagator(encoder, common.params_from_args(args), device=args.device)
    directions = ["forward", "backward"] if args.both else ["backward" if args.backward else "forward"]

    t0 = time.perf_counter()
    frames, confidences = 0, {}
    points = {}
    with atomic.staged_dir(args.out) as stage:
        for direction in directions:
            run = prop.run(video, {args.frame: label}, start=args.frame, direction=direction, stop=args.stop)
            total = (len(video) - args.frame) if direction == "forward" else args.frame + 1
            if args.stop is not None:
                total = min(total, abs(args.frame - args.stop))
            for r in common.progress(run, total=total, desc=f"propagating {direction}", unit="frame"):
                if r.is_keyframe and frames:
                    continue  # the keyframe is written once, by the first direction
                if r.mask is not None:
                    write_mask(stage / f"{r.index:05d}.png", r.mask)
                else:
                    points[r.index] = keypoints_to_dict(schema, r.keypoints)
                confidences[r.index] = round(r.confidence, 4)
                frames += 1
        if points:
            doc = {"video": str(args.video), "frames": {str(k): points[k] for k in sorted(points)}}
            atomic.write_text(stage / "keypoints.json", json.dumps(doc, indent=1))
    elapsed = time.perf_counter() - t0
    summary = {"video": str(args.video), "out": str(Path(args.out)), "keyframe": args.frame, "frames": frames,
               "seconds": round(elapsed, 3), "fps": round(frames / elapsed, 3) if elapsed else None,
               "device": str(prop.device), "precision": prop.precision, "model": encoder.spec.name,
               "checkpoint": str(args.checkpoint) if args.checkpoint else
               (None if args.random_init else str(default_checkpoint_path())),
               "adaptation": adaptation,
               "confidence": {str(k): confidences[k] for k in sorted(confidences)}}
    common.write_json(args.json, summary)
    print(f"wrote {frames} frames to {args.out} in {elapsed:.1f} s ({summary['fps']} frames/s)", file=sys.stderr)
    return 0


main = common.entry(parser, _main)

if __name__ == "__main__":
    sys.exit(main())
