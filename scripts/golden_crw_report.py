"""Print how our propagation agrees with the official CRW outputs (../shared/golden/crw_propagation)."""
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from engine.labels import read_mask
from engine.models import load_encoder
from engine.propagate import PropagationParams, Propagator
from engine.video import VideoSource

golden = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "golden" / "crw_propagation")
precision = sys.argv[2] if len(sys.argv) > 2 else "fp32"
enc = load_encoder(checkpoint=golden / "encoder_seed0.pt", model="crw-r18-s8")
for seq in ["blackswan", "libby", "car-roundabout"]:
    video = VideoSource.open(golden / "inputs" / seq)
    mask = read_mask(golden / "inputs" / seq / "Annotations" / "00000.png", size=video.size)
    prop = Propagator(enc, PropagationParams(precision=precision, max_side=None), device="cpu")
    soft_ref = np.load(golden / "soft" / f"{seq}.npz")["soft"]
    t = time.perf_counter()
    agree, within, maxdiff = [], [], []
    for r in prop.run(video, {0: mask}, start=0):
        gt = np.array(Image.open(golden / "outputs" / seq / f"{r.index:05d}.png"))
        agree.append((r.mask == gt).mean())
        d = np.abs(r.soft.transpose(1, 2, 0) - soft_ref[r.index]).max(-1)
        within.append((d <= 1e-4).mean())
        maxdiff.append(d.max())
    el = time.perf_counter() - t
    print(f"{seq:15s} {precision}: mask agreement worst frame {min(agree):.5%}, overall {np.mean(agree):.5%}; "
          f"soft cells within 1e-4 worst frame {min(within):.4%}, overall {np.mean(within):.4%}; "
          f"max |diff| {max(maxdiff):.2e} (frame 1: {maxdiff[1]:.2e}); {el:.1f} s")
