"""The one training loop for every method.

Optimiser and lr schedule from the config, autocast (bf16/fp16), gradient clipping, DDP through
torchrun, deterministic seeding, checkpoints in the engine's format (which `load_encoder` and
`affinity-propagate --checkpoint` open as they are) carrying the resume state, exact resume,
metrics.jsonl/TensorBoard logging, progress with throughput and ETA, periodic DAVIS evaluation
through `engine.evaluate`.

Exact resume: everything a step depends on is either saved (model incl. heads, BN statistics,
optimiser, scheduler, grad scaler, RNG states, step) or a pure function of (seed, global sample
index) (the clips, their augmentation and the loss's random draws; see train/data.py), so
N steps straight and N/2 + resume + N/2 give identical parameters on the same machine.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine import atomic
from engine.errors import CheckpointError, ConfigError
from engine.models.checkpoints import read_checkpoint, save_checkpoint

from . import dist
from .augment import build_pipeline
from .data import ClipDataset, build_index, make_loader
from .methods import get_method
from .runlog import MetricsLog, Progress
from .schedule import lr_factor, resolve_stages, stage_at, total_stage_steps

LAST = "checkpoint_last.pt"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    np_state = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "python": _plain(random.getstate()),
          "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                    int(np_state[3]), float(np_state[4])]}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    random.setstate(_tuples(st["python"]))
    n = st["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _plain(x):
    return [_plain(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


class _Adapter(nn.Module):
    """What DDP wraps: returns (loss, metrics dict) — containers DDP knows how to traverse."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, batch):
        out = self.method(batch)
        return out.loss, out.metrics


def peak_memory(device: torch.device) -> dict:
    """Peak memory so far, logged with every row (CUDA: allocator peak; CPU: process max RSS)."""
    if device.type == "cuda":
        return {"peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    try:
        import resource
        return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    except ImportError:   # Windows
        return {}


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"   # CPU: measured, see docs/TRAINING.md
    if name not in ("fp32", "bf16", "fp16"):
        raise ConfigError(None, f"precision must be auto, fp32, bf16 or fp16, got {name!r}")
    return name


def heldout_sequences(val_root: Path, which) -> "list[str] | None":
    """`heldout` = the val list minus its `tune` split (sequences.json), `val` = all, or a list."""
    if which is None or which == "val":
        return None
    if isinstance(which, list):
        return which
    meta = Path(val_root) / "sequences.json"
    if which in ("heldout", "tune") and meta.is_file():
        d = json.loads(meta.read_text())
        tune = d.get("tune") or []
        if which == "tune":
            return list(tune)
        return [s for s in d.get("val", []) if s not in tune] or None
    if which in ("heldout", "tune"):
        return None
    raise ConfigError(None, f"eval.sequences must be heldout, tune, val or a list, got {which!r}")


class Trainer:
    def __init__(self, config: dict, data: "str | os.PathLike", out: "str | os.PathLike",
                 val: "str | os.PathLike | None" = None, resume: str = "auto", device: str = "auto",
                 quiet: bool = False):
        self.cfg = json.loads(json.dumps(config))   # private, JSON-plain copy
        self.data_root, self.out = Path(data), Path(out)
        self.val = Path(val) if val else None
        self.resume_mode, self.quiet = resume, quiet
        self.info = dist.init(device)

    # -- set-up ------------------------------------------------------------------------------
    def _setup(self) -> None:
        c, info = self.cfg, self.info
        tc = c["train"]
        if int(tc.get("threads") or 0) > 0:
            torch.set_num_threads(int(tc["threads"]))
        seed = int(c.get("seed", 0))
        seed_everything(seed)   # same on every rank: identical initial weights (DDP also broadcasts)

        method_cls = get_method(c["method"])
        self.method = method_cls(c).to(info.device)
        self.method.train()
        aug_cfg = dict(c.get("augment") or {})
        aug_cfg.setdefault("name", method_cls.augmentation)
        transform = build_pipeline(aug_cfg, self.method.spec.mean, self.method.spec.std)

        dc = c["data"]
        sources, skipped = build_index(self.data_root, int(dc["clip_len"]), float(dc.get("frame_folder_fps", 24)))
        self.dataset = ClipDataset(sources, int(dc["clip_len"]), float(dc.get("fps", 8)), transform, seed,
                                   int(dc.get("clips_per_video", 5)))
        self.data_desc = {"root": str(self.data_root.resolve()), **self.dataset.describe(),
                          "skipped": skipped[:50], "n_skipped": len(skipped)}

        self.global_batch = int(tc["batch_size"])
        if self.global_batch % info.world:
            raise ConfigError(None, f"batch_size {self.global_batch} is not divisible by {info.world} processes")
        self.local_batch = self.global_batch // info.world
        self.steps_per_epoch = self.dataset.epoch_size / self.global_batch
        sched = c.get("schedule") or {}
        self.stages = resolve_stages(sched, self.steps_per_epoch) if sched.get("name") == "stages" else []
        if tc.get("max_steps"):
            self.max_steps = int(tc["max_steps"])
        elif self.stages:
            self.max_steps = total_stage_steps(self.stages)
        elif tc.get("epochs"):
            self.max_steps = max(1, int(round(float(tc["epochs"]) * self.steps_per_epoch)))
        else:
            raise ConfigError(None, "give train.max_steps or train.epochs")
        c["resolved"] = {"max_steps": self.max_steps, "steps_per_epoch": self.steps_per_epoch,
                         "world_size": info.world, "local_batch": self.local_batch, "device": str(info.device),
                         "stages": self.stages}

        oc = c["optim"]
        params = [p for p in self.method.parameters() if p.requires_grad]
        kw = dict(lr=float(oc["lr"]), weight_decay=float(oc.get("weight_decay", 0.0)),
                  betas=tuple(oc.get("betas", (0.9, 0.999))))
        name = oc.get("name", "adam").lower()
        if name == "adam":
            self.opt = torch.optim.Adam(params, **kw)
        elif name == "adamw":
            self.opt = torch.optim.AdamW(params, **kw)
        else:
            raise ConfigError(None, f"optim.name must be adam or adamw, got {name!r}")
        self.lr_at = lr_factor(sched, float(oc["lr"]), self.steps_per_epoch, self.max_steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self.lr_at)
        # A wall-clock budget (matched-compute comparisons): the run ends when it is spent, and the
        # stages and lr advance by the fraction spent, so a multi-stage recipe keeps its proportions
        # whatever the throughput. Such a run is not resumable to the same steps.
        self.max_seconds = float(tc.get("max_seconds") or 0.0)

        self.precision = resolve_precision(tc.get("precision", "auto"), info.device)
        self.scaler = torch.amp.GradScaler(info.device.type) if self.precision == "fp16" else None

        self.step = 0
        resumed = self._maybe_resume()
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic.write_text(self.out / "config.json", json.dumps(c, indent=1) + "\n")
        self.log = MetricsLog(self.out, self.step if resumed else None, enabled=info.is_main)
        model = _Adapter(self.method)
        if info.enabled:
            ddp_kw = {"device_ids": [info.device.index]} if info.device.type == "cuda" else {}
            model = nn.parallel.DistributedDataParallel(model, **ddp_kw)
        self.model = model
        self.resumed = resumed

    def _maybe_resume(self) -> bool:
        mode = self.resume_mode
        if mode == "never":
            return False
        path = self.out / LAST if mode == "auto" else Path(mode)
        if not path.exists():
            if mode != "auto":
                raise CheckpointError(path, "resume checkpoint not found")
            return False
        ck = read_checkpoint(path, map_location=self.info.device)
        ts = ck.get("train_state")
        if not isinstance(ts, dict):
            raise CheckpointError(path, "has no train_state (a final export cannot be resumed)")
        if ck.get("method") != self.cfg["method"]:
            raise CheckpointError(path, f"is a {ck.get('method')!r} run, not {self.cfg['method']!r}")
        if int(ts["global_batch"]) != self.global_batch:
            raise CheckpointError(path, f"was trained with batch {ts['global_batch']}, config says {self.global_batch} "
                                        "(the data position would not match)")
        self.method.load_state_dict(ts["model"])
        self.opt.load_state_dict(ts["optimizer"])
        self.sched.load_state_dict(ts["scheduler"])
        if self.scaler is not None and ts.get("scaler"):
            self.scaler.load_state_dict(ts["scaler"])
        set_rng_state(ts["rng"])
        self.step = int(ck["step"])
        if self.info.is_main and not self.quiet:
            print(f"resuming {path} at step {self.step}", flush=True)
        return True

    # -- checkpoints and evaluation -------------------------------------------------------------
    def _train_state(self) -> dict:
        return {"model": self.method.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": rng_state(), "global_batch": self.global_batch,
                "samples_seen": self.step * self.global_batch, "world_size": self.info.world}

    def save(self, metrics: dict) -> Path:
        tc = self.cfg["train"]
        path = self.out / f"checkpoint_{self.step:07d}.pt"
        save_checkpoint(path, self.method.export_encoder(), self.cfg["method"], config=self.cfg,
                        data=self.data_desc, step=self.step, metrics=metrics, extra={"train_state": self._train_state()})
        atomic.write_with(self.out / LAST, lambda tmp: shutil.copyfile(path, tmp))
        keep = int(tc.get("keep_checkpoints", 0) or 0)
        if keep > 0:   # the step-0 checkpoint is the "before training" reference: never pruned
            numbered = sorted(p for p in self.out.glob("checkpoint_[0-9]*.pt") if p.name != "checkpoint_0000000.pt")
            for old in numbered[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def evaluate(self, ckpt: Path) -> dict:
        from engine.evaluate import evaluate_davis_dataset
        from engine.models import load_encoder
        from engine.propagate import PropagationParams

        ec = dict(self.cfg.get("eval") or {})
        seqs = heldout_sequences(self.val, ec.pop("sequences", "heldout"))
        frames = ec.pop("frames", None)
        params = PropagationParams(**{k: v for k, v in ec.items() if k in PropagationParams.__dataclass_fields__})
        encoder = load_encoder(checkpoint=ckpt)   # exactly what the engine will open
        t0 = time.perf_counter()
        rep = evaluate_davis_dataset(self.val, encoder, params, str(self.info.device.type),
                                     out_dir=self.out / "eval" / f"step_{self.step:07d}", sequences=seqs,
                                     frames=frames, run_info={"checkpoint": str(ckpt)})
        g = rep.global_table()
        return {"step": self.step, "kind": "eval", **{k: float(v) for k, v in g.items()},
                "sequences": len(rep.sequences), "frames_limit": frames, "scale": params.scale,
                "seconds": time.perf_counter() - t0}

    # -- the loop --------------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        return {k: (v.to(self.info.device, non_blocking=True) if isinstance(v, torch.Tensor) and k != "seed" else v)
                for k, v in batch.items()}

    def _forward_backward(self, batch: dict, accum: int, autocast):
        """Gradients of the mean loss over the batch, in `accum` micro-batches (gradient accumulation;
        DDP all-reduces only on the last one).  Returns the batch's mean loss and metrics."""
        n = next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0]
        size = n // accum
        loss_total, metrics_total = 0.0, {}
        for i in range(accum):
            mb = {k: v[i * size:(i + 1) * size] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            sync = nullcontext() if (i == accum - 1 or not self.info.enabled) else self.model.no_sync()
            with sync:
                with autocast:
                    loss, metrics = self.model(mb)
                scaled = loss / accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            loss_total = loss_total + loss.detach() / accum
            for k, v in metrics.items():
                metrics_total[k] = metrics_total.get(k, 0.0) + v.detach() / accum
        return loss_total, metrics_total

    def _schedule_position(self, elapsed: float) -> int:
        if not self.max_seconds:
            return self.step
        return max(0, min(self.max_steps - 1, int(elapsed / self.max_seconds * self.max_steps)))

    def _elapsed(self, t_start: float) -> float:
        """Seconds of training loop, the same on every process (their mean), so that all ranks
        switch stages, set the lr and stop at the same step."""
        return dist.all_mean({"elapsed": time.perf_counter() - t_start}, self.info)["elapsed"]

    def run(self) -> dict:
        self._setup()
        info, tc = self.info, self.cfg["train"]
        log_every, ckpt_every = int(tc.get("log_every", 10)), int(tc.get("ckpt_every", 1000))
        eval_every = int(tc.get("eval_every", 0) or 0) if self.val else 0
        if self.step == 0 and tc.get("save_initial", True) and info.is_main:
            self.save({})
        last_row: dict = {}
        if self.step >= self.max_steps:
            return last_row
        loader = make_loader(self.dataset, self.local_batch, info.rank, info.world, self.step, self.max_steps,
                             int(self.cfg["data"].get("num_workers", 0)), pin_memory=info.device.type == "cuda")
        autocast = (torch.autocast(info.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)
                    if self.precision != "fp32" else nullcontext())
        params = [p for p in self.method.parameters() if p.requires_grad]
        accum = int(tc.get("accumulate", 1) or 1)
        if accum < 1 or self.local_batch % accum:
            raise ConfigError(None, f"train.accumulate={accum} must divide the per-process batch {self.local_batch}")
        clip = float(self.cfg["optim"].get("grad_clip", 0.0) or 0.0)
        progress = Progress(self.max_steps, self.step, enabled=info.is_main and not self.quiet)
        stage = None
        acc: dict[str, float] = {}
        n_acc, t_win = 0, time.perf_counter()
        t_start, elapsed = time.perf_counter(), 0.0
        try:
            for batch in loader:
                pos = self._schedule_position(elapsed)
                st = stage_at(self.stages, pos) if self.stages else None
                if st is not stage and st is not None:
                    self.method.set_stage(st)
                    stage = st
                batch = self._to_device(batch)
                self.opt.zero_grad(set_to_none=True)
                loss, metrics = self._forward_backward(batch, accum, autocast)
                if self.scaler is not None:
                    self.scaler.unscale_(self.opt)
                gnorm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
                if self.max_seconds:
                    for g in self.opt.param_groups:
                        g["lr"] = g["initial_lr"] * self.lr_at(pos)
                lr = self.opt.param_groups[0]["lr"]
                if self.scaler is not None:
                    self.scaler.step(self.opt)
                    self.scaler.update()
                else:
                    self.opt.step()
                self.sched.step()
                self.step += 1
                vals = {"loss": float(loss.detach()), "grad_norm": float(gnorm),
                        **{k: float(v) for k, v in metrics.items()}}
                for k, v in vals.items():
                    acc[k] = acc.get(k, 0.0) + v
                n_acc += 1
                if self.max_seconds:
                    elapsed = self._elapsed(t_start)
                done = self.step >= self.max_steps or bool(self.max_seconds and elapsed >= self.max_seconds)
                if self.step % log_every == 0 or done:
                    dt = time.perf_counter() - t_win
                    row = dist.all_mean({k: v / n_acc for k, v in acc.items()}, info)
                    last_row = {"step": self.step, "loss": row.pop("loss"), "lr": lr,
                                "clips_per_s": n_acc * self.global_batch / dt if dt > 0 else None,
                                **row, **peak_memory(info.device), "time": time.time()}
                    if stage is not None:
                        last_row["stage"] = self.stages.index(stage)
                    self.log.write(last_row)
                    progress.update(self.step, last_row)
                    acc, n_acc, t_win = {}, 0, time.perf_counter()
                if self.step % ckpt_every == 0 or done or (eval_every and self.step % eval_every == 0):
                    if info.is_main:
                        path = self.save({k: v for k, v in last_row.items() if k != "time"})
                        if eval_every and (self.step % eval_every == 0 or done):
                            self.log.write(self.evaluate(path))
                    dist.barrier(info)
                    if n_acc == 0:   # saving/evaluating is not training time
                        t_win = time.perf_counter()
                if done:
                    break
        finally:
            progress.close()
            self.log.close()
            dist.shutdown(info)
        return last_row
