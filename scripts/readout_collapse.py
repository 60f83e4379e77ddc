"""How collapsed is a checkpoint's UVC-style readout?  One-step diagnostics on held-out DAVIS-2016.

  python scripts/readout_collapse.py CHECKPOINT [...] [--davis ../shared/data/davis2016] [--gap 5]
      [--scale 0.5] [--json OUT]

UVC's readout (spec §6.9) is a softmax over ALL cells of a reference at tau 1 on unnormalised
features.  With features that are not yet trained for it, a handful of high-norm reference cells win
every target cell and the masks vanish.  For frame 0 -> frame GAP of every held-out sequence this
prints, per checkpoint: the share of distinct reference cells that are some target's top-1 (about 1,600
targets at scale 0.5 on DAVIS), the median top-1 weight, and the IoU of the one-step mask under the engine's
UVC readout (`affinity.global_topk_softmax`, top-5 unrenormalised) and, for contrast, under the same
top-5 on L2-normalised features (tau 0.05, renormalised).  Means over the sequences.
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
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--davis", default=str(REPO.parent / "shared" / "data" / "davis2016"))
    p.add_argument("--gap", type=int, default=5)
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--json")
    a = p.parse_args(argv)
    import numpy as np
    import torch
    from PIL import Image
    from engine import affinity
    from engine.features import FeatureExtractor, processing_size, resize_frame
    from engine.metrics import db_eval_iou
    from engine.models import load_encoder
    from engine.models.checkpoints import read_checkpoint
    from train.trainer import heldout_sequences

    davis = Path(a.davis)
    seqs = heldout_sequences(davis, "heldout")
    rows = []
    for ck in a.checkpoints:
        fx = FeatureExtractor(load_encoder(checkpoint=Path(ck)), "cpu", "fp32")
        per = []
        for s in seqs:
            imgs = [np.array(Image.open(davis / s / "JPEGImages" / f"{i:05d}.jpg").convert("RGB")) for i in (0, a.gap)]
            size = processing_size(imgs[0].shape[1], imgs[0].shape[0], scale=a.scale)
            f = fx.extract([resize_frame(im, size) for im in imgs])
            c, h, w = f.shape[1:]
            ref, tgt = f[0].reshape(c, -1), f[1].reshape(c, -1)
            m0, m1 = ((np.array(Image.open(davis / s / "Annotations" / f"{i:05d}.png").resize((w, h), Image.NEAREST)) > 0)
                      .reshape(-1) for i in (0, a.gap))
            lab = torch.from_numpy(np.stack([~m0, m0], 1).astype(np.float32))
            wts, cells = affinity.global_topk_softmax(tgt, ref, 5)
            uvc = torch.einsum("nk,nkc->nc", wts, lab[cells]).argmax(1).numpy() == 1
            rn, tn = (torch.nn.functional.normalize(x, dim=0) for x in (ref, tgt))
            v, j = (tn.t() @ rn).topk(5, dim=1)
            l2 = torch.einsum("nk,nkc->nc", torch.softmax(v / 0.05, 1), lab[j]).argmax(1).numpy() == 1
            per.append({"distinct_top1": len(torch.unique(cells[:, 0])) / cells.shape[0],
                        "top1_weight": float(wts[:, 0].median()), "iou_uvc": db_eval_iou(m1.reshape(h, w), uvc.reshape(h, w)),
                        "iou_l2": db_eval_iou(m1.reshape(h, w), l2.reshape(h, w))})
        row = {"checkpoint": ck, "step": read_checkpoint(Path(ck))["step"], **{k: round(statistics.mean(r[k] for r in per), 4) for k in per[0]}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
