"""PSNR of UVC Lab auto-encoders on held-out DAVIS-2016 frames (never used to train any of them).

  python scripts/ae_psnr.py [AE ...] [--davis ../shared/data/davis2016] [--size 256] [--json OUT]

Each AE is a folder of UVC's published weights or a `uvc_ae` checkpoint of ours; frame 10 of every
held-out sequence (sequences.json's val minus its tune split), resized to SIZE x SIZE, 8-bit Lab in
[-1, 1]; PSNR over a value range of 2.  Prints one JSON line per AE (mean, min, max).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("aes", nargs="+")
    p.add_argument("--davis", default=str(REPO.parent / "shared" / "data" / "davis2016"))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--json")
    a = p.parse_args(argv)
    import cv2
    import numpy as np
    import torch
    from train.methods.uvc_parts import LabAutoEncoder, lab8, lab_psnr
    from train.trainer import heldout_sequences
    seqs = heldout_sequences(Path(a.davis), "heldout")
    frames = []
    for s in seqs:
        rgb = cv2.imread(str(Path(a.davis) / s / "JPEGImages" / "00010.jpg"))[..., ::-1]
        frames.append(lab8(np.ascontiguousarray(cv2.resize(rgb, (a.size, a.size), interpolation=cv2.INTER_AREA))))
    x = torch.stack(frames)
    rows = []
    for path in a.aes:
        ae = LabAutoEncoder() if path == "random" else LabAutoEncoder.load(path)
        torch.manual_seed(0)
        with torch.no_grad():
            v = [float(q) for q in lab_psnr(ae.eval()(x), x)]
        row = {"autoencoder": path, "frames": len(v), "size": a.size, "psnr_mean_db": round(statistics.mean(v), 2),
               "psnr_min_db": round(min(v), 2), "psnr_max_db": round(max(v), 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if a.json:
        from engine import atomic
        atomic.write_text(a.json, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
