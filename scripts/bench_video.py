"""Decode speed of engine.video on one clip: open time, sequential fps, random-access latency.

    python scripts/bench_video.py [VIDEO_OR_FOLDER ...] [--random 40] [--seed 0]

Prints numbers only; nothing is asserted.  Default clip: ../shared/data/train_videos/davis_train-bear.mp4.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.video import VideoSource  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "train_videos" / "davis_train-bear.mp4"


def bench(path, n_random: int, seed: int):
    t = time.perf_counter()
    src = VideoSource.open(path, cache_frames=0)  # no cache: every number is a real decode
    open_ms = (time.perf_counter() - t) * 1e3
    index = getattr(src, "_index", None)
    layout = f"{len(index.keys)} keyframes" if index else "image folder"

    t = time.perf_counter()
    n = sum(1 for _ in src.frames())
    seq_fps = n / (time.perf_counter() - t)

    t = time.perf_counter()
    for i in range(len(src)):
        src.frame(i)
    scrub_fps = len(src) / (time.perf_counter() - t)

    rng = random.Random(seed)
    order = [rng.randrange(len(src)) for _ in range(n_random)]
    t = time.perf_counter()
    for i in order:
        src.frame(i)
    rand_ms = (time.perf_counter() - t) / n_random * 1e3

    w, h = src.size
    print(f"{src.name}: {len(src)} frames {w}x{h} @ {src.fps:.2f} fps, {layout}")
    print(f"  open                      {open_ms:8.1f} ms")
    print(f"  frames() sequential       {seq_fps:8.1f} frames/s")
    print(f"  frame(i) in order (scrub) {scrub_fps:8.1f} frames/s")
    print(f"  frame(i) random order     {rand_ms:8.2f} ms/frame  ({n_random} reads)")
    src.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*", default=[str(DEFAULT)])
    ap.add_argument("--random", type=int, default=40, help="number of random-order reads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for v in args.videos:
        bench(v, args.random, args.seed)


if __name__ == "__main__":
    main()
