"""The run folder's logs: metrics.jsonl (the machine-readable record), TensorBoard when the
`tensorboard` package is installed, and a progress bar (tqdm on a terminal, a line per log step
otherwise so nohup logs show progress too)."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from engine import atomic


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLog:
    def __init__(self, run_dir: Path, resume_step: "int | None", enabled: bool = True, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            # Rows written after the checkpoint we resume from describe steps that will be redone.
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            atomic.write_text(self.path, "".join(ln + "\n" for ln in keep))
        elif resume_step is None and self.path.exists():
            atomic.write_text(self.path, "")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)
            except Exception as exc:   # the tensorboard package is optional
                print(f"note: TensorBoard logging off ({type(exc).__name__}: {exc}); metrics.jsonl has everything",
                      file=sys.stderr)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        row = {k: _clean(v) for k, v in row.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
        if self.tb is not None:
            step = int(row["step"])
            prefix = "eval/" if row.get("kind") == "eval" else "train/"
            for k, v in row.items():
                if k not in ("step", "kind", "time") and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(prefix + k, v, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path) -> list[dict]:
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


class Progress:
    def __init__(self, total: int, initial: int, enabled: bool = True):
        self.total, self.enabled = total, enabled
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.t0, self.s0 = time.perf_counter(), initial
        if enabled and self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, step: int, row: "dict | None" = None) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if row:
                self.bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row.get('walk_accuracy', float('nan')):.2f}",
                                     clips_s=f"{row['clips_per_s']:.2f}")
        elif row:
            done = step - self.s0
            el = time.perf_counter() - self.t0
            eta = el / done * (self.total - step) if done > 0 else float("nan")
            acc = row.get("walk_accuracy")
            print(f"step {step}/{self.total} loss {row['loss']:.4f}"
                  + (f" walk_acc {acc:.3f}" if acc is not None else "")
                  + f" lr {row['lr']:.2e} {row['clips_per_s']:.2f} clips/s ETA {eta / 60:.1f} min",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
