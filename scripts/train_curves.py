"""Loss and walk-accuracy curves of training runs, from their metrics.jsonl.

  python scripts/train_curves.py RUN_DIR [RUN_DIR ...] [--png curves.png] [--every 50] [--window 10]

Prints, per run, a table of the moving average (over `--window` logged rows) every `--every`
steps plus the first/last values, and the evaluation rows; with --png draws both curves per run
with OpenCV (no plotting library needed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

COLOURS = [(200, 80, 30), (40, 140, 230), (60, 170, 60), (160, 60, 190)]


def read(run: Path) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r for r in rows if r.get("kind") != "eval"], [r for r in rows if r.get("kind") == "eval"]


def smooth(v: np.ndarray, w: int) -> np.ndarray:
    if len(v) == 0 or w <= 1:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    out = np.empty_like(v)
    for i in range(len(v)):
        lo = max(0, i - w + 1)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def summary(run: Path, every: int, window: int) -> dict:
    train, evals = read(run)
    steps = np.array([r["step"] for r in train])
    loss = np.array([r["loss"] for r in train], float)
    acc = np.array([r.get("walk_accuracy", np.nan) for r in train], float)
    ls, as_ = smooth(loss, window), smooth(acc, window)
    print(f"\n== {run} ({len(train)} rows, steps {steps[0]}..{steps[-1]})")
    print(f"{'step':>6} {'loss':>9} {'loss~':>9} {'walk_acc':>9} {'acc~':>7} {'clips/s':>8}")
    for i, r in enumerate(train):
        if r["step"] % every == 0 or i in (0, len(train) - 1):
            print(f"{r['step']:>6} {loss[i]:>9.4f} {ls[i]:>9.4f} {acc[i]:>9.3f} {as_[i]:>7.3f} {r['clips_per_s']:>8.2f}")
    for e in evals:
        print(f"eval step {e['step']}: J&F {e['J&F-Mean']:.4f} (J {e['J-Mean']:.4f}, F {e['F-Mean']:.4f})")
    first = slice(0, min(window, len(loss)))
    last = slice(max(0, len(loss) - window), len(loss))
    return {"run": str(run), "steps": int(steps[-1]), "loss_first": float(loss[first].mean()),
            "loss_last": float(loss[last].mean()), "walk_acc_first": float(np.nanmean(acc[first])),
            "walk_acc_last": float(np.nanmean(acc[last])), "clips_per_s_median": float(np.median([r["clips_per_s"] for r in train])),
            "window_rows": window}


def draw(runs: list[Path], path: Path, window: int) -> None:
    import cv2
    W, H, M = 900, 300, 50
    panels = []
    for key, title in (("loss", "loss"), ("walk_accuracy", "walk accuracy (longest cycle)")):
        img = np.full((H, W, 3), 255, np.uint8)
        series = []
        for run in runs:
            train, _ = read(run)
            s = np.array([r["step"] for r in train], float)
            v = smooth(np.array([r.get(key, np.nan) for r in train], float), window)
            series.append((s, v))
        smax = max(s.max() for s, _ in series)
        vals = np.concatenate([v[np.isfinite(v)] for _, v in series])
        lo, hi = float(vals.min()), float(vals.max())
        hi = hi if hi > lo else lo + 1
        cv2.rectangle(img, (M, 20), (W - 20, H - M), (0, 0, 0), 1)
        for t in np.linspace(lo, hi, 5):
            y = int(H - M - (t - lo) / (hi - lo) * (H - M - 20))
            cv2.putText(img, f"{t:.2f}", (2, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        for t in np.linspace(0, smax, 6):
            x = int(M + t / smax * (W - 20 - M))
            cv2.putText(img, f"{int(t)}", (x - 10, H - M + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        for i, ((s, v), run) in enumerate(zip(series, runs)):
            ok = np.isfinite(v)
            pts = np.stack([M + s[ok] / smax * (W - 20 - M), H - M - (v[ok] - lo) / (hi - lo) * (H - M - 20)], 1)
            cv2.polylines(img, [pts.astype(np.int32)], False, COLOURS[i % 4], 2, cv2.LINE_AA)
            cv2.putText(img, run.name, (W - 220, 40 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, COLOURS[i % 4], 1)
        cv2.putText(img, f"{title} (moving mean of {window} rows) vs step", (M, 14), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (0, 0, 0), 1)
        panels.append(img)
    cv2.imwrite(str(path), np.concatenate(panels, 0)[:, :, ::-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--png")
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--window", type=int, default=10)
    a = p.parse_args(argv)
    runs = [Path(r) for r in a.runs]
    out = [summary(r, a.every, a.window) for r in runs]
    print()
    for s in out:
        print(json.dumps(s))
    if a.png:
        draw(runs, Path(a.png), a.window)
        print(f"wrote {a.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
