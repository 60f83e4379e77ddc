"""affinity-bench: per-stage time, frames/s and peak memory of propagation on one video."""
from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time

import numpy as np
import torch

from . import common


class LoopedVideo:
    """A video repeated to `length` frames, for memory-vs-length measurements on a short clip."""

    def __init__(self, video, length: int):
        self._v, self._n = video, length
        self.size, self.fps, self.path = video.size, video.fps, f"{video.path}#loop{length}"

    def __len__(self):
        return self._n

    def frame(self, i):
        return self._v.frame(i % len(self._v))

    def frames(self, start=0, stop=None):
        stop = self._n if stop is None else stop
        for i in range(start, stop):
            yield i, self._v.frame(i % len(self._v))


def synthetic_mask(size) -> np.ndarray:
    """Two ellipses, so the benchmark never depends on an annotation file."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), np.uint8)
    m[((xx - w * 0.35) / (w * 0.12)) ** 2 + ((yy - h * 0.5) / (h * 0.2)) ** 2 < 1] = 1
    m[((xx - w * 0.68) / (w * 0.1)) ** 2 + ((yy - h * 0.45) / (h * 0.25)) ** 2 < 1] = 2
    return m


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affinity-bench", description=__doc__)
    p.add_argument("video")
    p.add_argument("--mask", help="first-frame mask (default: two synthetic ellipses)")
    p.add_argument("--frames", type=int, default=None, help="frames to propagate (default: the whole video)")
    p.add_argument("--loop", type=int, default=None, help="repeat the video to this many frames")
    p.add_argument("--warmup", type=int, default=3, help="frames excluded from the per-stage medians")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    common.add_run_args(p)
    return p


def _main(args) -> int:
    from ..labels import read_mask
    from ..propagate import Propagator
    from ..video import VideoSource

    if args.threads:
        torch.set_num_threads(args.threads)
    video = VideoSource.open(args.video)
    if args.loop:
        video = LoopedVideo(video, args.loop)
    mask = read_mask(args.mask, size=video.size) if args.mask else synthetic_mask(video.size)
    encoder = common.encoder_from_args(args)
    prop = Propagator(encoder, common.params_from_args(args), device=args.device)
    stop = len(video) if args.frames is None else min(len(video), args.frames)

    stages = {"decode_video_ms": [], "features_ms": [], "affinity_ms": [], "decode_ms": []}
    t0 = time.perf_counter()
    n = 0
    for r in common.progress(prop.run(video, {0: mask}, start=0, stop=stop), total=stop, desc="bench", unit="frame"):
        if n > args.warmup:
            for k in stages:
                stages[k].append(r.timings.get(k, 0.0))
        n += 1
    if prop.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (pw, ph), grid = prop.frame_grid(video)
    med = {k: round(statistics.median(v), 2) if v else None for k, v in stages.items()}
    per_frame = sum(v for v in med.values() if v)
    out = {
        "video": str(args.video), "frames": n, "size": list(video.size), "processing_size": [pw, ph],
        "feature_grid": list(grid), "device": str(prop.device), "precision": prop.precision,
        "threads": torch.get_num_threads(), "params": vars(prop.params).copy(),
        "wall_s": round(wall, 3), "fps": round(n / wall, 3), "steady_fps": round(1000 / per_frame, 3) if per_frame else None,
        "stage_median_ms": med, "peak_rss_mb": round(peak_rss_mb, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if prop.device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    common.write_json(args.json, out)
    print(f"{n} frames {pw}x{ph} on {out['device']} ({out['precision']}, {out['threads']} threads): "
          f"{out['fps']} frames/s end to end, steady {out['steady_fps']} frames/s, peak RSS {out['peak_rss_mb']} MB")
    for k, v in med.items():
        print(f"  {k:16s} {v} ms (median)")
    return 0


main = common.entry(parser, _main)

if __name__ == "__main__":
    sys.exit(main())
