"""Decode every video under SRC into a JPEG frame folder under DST with OpenCV (for machines without
PyAV, e.g. the GPU machine; the training data pipeline reads frame folders at `data.frame_folder_fps`).

  python scripts/videos_to_frames.py SRC DST [--quality 95]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    import cv2
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--quality", type=int, default=95)
    a = p.parse_args(argv)
    total = 0
    for f in sorted(Path(a.src).rglob("*.mp4")):
        out = Path(a.dst) / f.stem
        out.mkdir(parents=True, exist_ok=True)
        cap = cv2.VideoCapture(str(f))
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            cv2.imwrite(str(out / f"{n:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, a.quality])
            n += 1
        cap.release()
        if n == 0:
            print(f"{f}: no frame decoded", file=sys.stderr)
        total += n
    print(f"{total} frames from {a.src} into {a.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
