"""Adapt a model to one video: fine-tune its affinity with its own self-supervised loss on clips of
the video being annotated, for a time budget.

The method is the one stored in the checkpoint (CRW, JSTG, ...), its config is the checkpoint's
training config with `configs/adapt.json` over it (small clips, low learning rate, the loss on the
layer the engine propagates with).  The adapter takes a `VideoSource`, never a dataset folder, so it
cannot see ground truth by construction.

Determinism: for a seed and a number of steps the result is bit-identical on one machine; a time
budget decides the number of steps, which the checkpoint records (`adapt.steps`), so `steps=` repeats
a run exactly.  Cancelling or failing writes nothing: the caller's model stays in use.

A checkpoint that holds only the inference trunk (the bundled model) has no projection head; the
head is then an identity on the trunk's channels, so the loss starts from exactly the features the
engine propagates with.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engine.errors import CheckpointError, ConfigError, VideoError
from engine.models.checkpoints import default_checkpoint_path, load_encoder, read_checkpoint, save_checkpoint
from engine.models.specs import Encoder

from .augment import build_pipeline
from .config import CONFIG_DIR, _merge, _read
from .data import ClipDataset, ClipSource
from .methods import get_method, method_names
from .trainer import resolve_precision, seed_everything

PROBE_OFFSET = 10 ** 9      # probe clips are sample indices far from the training ones


@dataclass
class AdaptProgress:
    step: int
    loss: float
    elapsed: float
    budget: "float | None"


@dataclass
class AdaptResult:
    method: str
    steps: int
    seconds: float
    seed: int
    loss_before: float            # mean loss on fixed probe clips, eval mode (no dropout, BN frozen)
    loss_after: float
    losses: list = field(default_factory=list)    # training loss per step
    cancelled: bool = False
    checkpoint: "str | None" = None               # what was adapted
    out: "str | None" = None                      # where the adapted checkpoint was written
    encoder: "Encoder | None" = None

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("encoder")
        d["losses"] = [round(x, 5) for x in self.losses]
        return d


class VideoClips(ClipDataset):
    """ClipDataset over one already-open video (the one being annotated)."""

    def __init__(self, video, clip_len: int, fps: float, transform, seed: int):
        src = ClipSource(str(video.path), len(video), float(video.fps or 24.0), "video")
        super().__init__([src], clip_len, fps, transform, seed, clips_per_video=1, max_retries=0)
        self.video = video

    def _video(self, src):
        return self.video

    def __getitem__(self, index: int) -> dict:
        try:
            return super().__getitem__(index)
        except VideoError as exc:
            raise VideoError(self.video.path, f"frames could not be decoded for adaptation ({exc.reason})") from None


def adapt_config(ck: dict, path) -> dict:
    method = ck.get("method")
    if method not in method_names():
        raise CheckpointError(path, f"was trained by {method!r}, which has no training loss here "
                                    f"(adaptable: {', '.join(method_names())})")
    base = dict(ck.get("config") or {})
    base.setdefault("method", method)
    over = _read(CONFIG_DIR / "adapt.json", method)
    per_method = CONFIG_DIR / f"{method}-adapt.json"
    if per_method.is_file():
        over = _merge(over, _read(per_method, method))
    return _merge_adapt(base, over)


def _merge_adapt(base: dict, over: dict) -> dict:
    """`over` on `base`; its augmentation replaces the training one whole (another pipeline)."""
    out = _merge(base, over)
    if "augment" in over:
        out["augment"] = dict(over["augment"])
    return out


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(None, "--device cuda but no CUDA device is available")
    return torch.device(device)


def _precision(name: str, device: torch.device) -> "torch.dtype | None":
    """The trainer's rule, except that "auto" on a CPU with fast bf16 (AMX) uses it: adaptation
    has seconds, not hours, so the 1.6x counts more than the last digit of the loss."""
    if name == "auto" and device.type == "cpu":
        from engine.features import cpu_has_fast_bf16
        name = "bf16" if cpu_has_fast_bf16() else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[resolve_precision(name, device)]


def _collate(items: list[dict], device) -> dict:
    out = {}
    for k in items[0]:
        out[k] = torch.stack([it[k] for it in items])
        if k != "seed":
            out[k] = out[k].to(device)
    return out


def build_method(ck: dict, path, cfg: dict, device) -> tuple[torch.nn.Module, Encoder]:
    """The method with the checkpoint's weights; (method, the checkpoint's encoder)."""
    encoder = load_encoder(checkpoint=path)
    state = ck.get("method_state") or (ck.get("train_state") or {}).get("model")
    if state is None:
        cfg.setdefault("loss", {})["embed_dim"] = encoder.spec.channels
    method = get_method(cfg["method"])(cfg)
    if state is not None:
        missing, unexpected = method.load_state_dict(state, strict=False)
        if any(not k.startswith("trunk.") for k in missing):
            raise CheckpointError(path, f"its training state does not fit the {cfg['method']} loss: "
                                        f"missing {sorted(missing)[:5]}")
    else:
        method.identity_head()
    method.trunk.load_state_dict(encoder.trunk.state_dict())
    return method.to(device), encoder


def adapt(video, checkpoint=None, out=None, seconds: "float | None" = 60.0, steps: "int | None" = None,
          device: str = "auto", seed: int = 0, overrides: "dict | None" = None,
          progress: "Callable[[AdaptProgress], None] | None" = None, cancel=None) -> AdaptResult:
    """Fine-tune `checkpoint` (default: the bundled model) on clips of `video` for `seconds` of wall
    time (or exactly `steps` steps); write the result to `out` (our checkpoint format) unless
    cancelled.  `cancel`: anything with is_set(), checked between steps."""
    if seconds is None and steps is None:
        raise ConfigError(None, "give a time budget (seconds) or a number of steps")
    t0 = time.perf_counter()
    path = Path(checkpoint) if checkpoint else default_checkpoint_path()
    ck = read_checkpoint(path)
    cfg = adapt_config(ck, path)
    if overrides:
        cfg = _merge_adapt(cfg, overrides)
    dev = _resolve_device(device)
    seed_everything(seed)
    method, base = build_method(ck, path, cfg, dev)
    transform = build_pipeline({"name": method.augmentation, **(cfg.get("augment") or {})},
                               method.spec.mean, method.spec.std)
    dc, tc, oc = cfg["data"], cfg["train"], cfg["optim"]
    clips = VideoClips(video, int(dc["clip_len"]), float(dc.get("fps", 8)), transform, seed)
    batch = int(tc["batch_size"])
    autocast_dtype = _precision(tc.get("precision", "auto"), dev)

    def loss_of(items) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            return method(_collate(items, dev)).loss

    probe = [clips[PROBE_OFFSET + j] for j in range(int(cfg.get("adapt", {}).get("probe_clips", 2)))]

    freeze_bn = bool(cfg.get("adapt", {}).get("freeze_bn", True))

    def train_mode() -> None:
        method.train()
        if freeze_bn:   # a batch of 2 clips from one video is no basis for new BN statistics
            for m in method.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def probe_loss() -> float:
        method.eval()
        with torch.no_grad():
            v = float(loss_of(probe))
        train_mode()
        return v

    before = probe_loss()
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=float(oc["lr"]), weight_decay=float(oc.get("weight_decay", 0.0)))
    clip = float(oc.get("grad_clip", 0.0) or 0.0)
    losses, step_times = [], []
    cancelled = False
    train_mode()
    while True:
        if steps is not None and len(losses) >= steps:
            break
        elapsed = time.perf_counter() - t0
        # At least one step, however small the budget (loading and the probe may use it all).
        if steps is None and step_times and elapsed + float(np.median(step_times)) > seconds:
            break
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
        ts = time.perf_counter()
        s = len(losses)
        items = [clips[s * batch + j] for j in range(batch)]
        opt.zero_grad(set_to_none=True)
        loss = loss_of(items)
        if not torch.isfinite(loss):
            raise ConfigError(None, f"adaptation diverged at step {s} (loss {float(loss)}); the model is unchanged")
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        losses.append(float(loss.detach()))
        step_times.append(time.perf_counter() - ts)
        if progress is not None:
            progress(AdaptProgress(len(losses), losses[-1], time.perf_counter() - t0, seconds))
    if cancelled:
        return AdaptResult(cfg["method"], len(losses), time.perf_counter() - t0, seed, before, float("nan"),
                           losses, cancelled=True, checkpoint=str(path))
    after = probe_loss()
    method.eval()
    encoder = Encoder(base.spec, method.trunk).eval()
    encoder.source = f"adapted from {path.name} on {Path(str(video.path)).name} ({len(losses)} steps)"
    result = AdaptResult(cfg["method"], len(losses), time.perf_counter() - t0, seed, before, after, losses,
                         checkpoint=str(path), out=str(out) if out else None, encoder=encoder)
    if out is not None:
        meta = {k: v for k, v in result.summary().items() if k not in ("out",)}
        save_checkpoint(out, encoder, cfg["method"], config=json.loads(json.dumps(cfg)),
                        data={"adapted_on": {"video": str(video.path), "frames": len(video),
                                             "fingerprint": video.fingerprint()}},
                        step=int(ck.get("step", 0)) + len(losses), metrics={"adapt": meta},
                        extra={"method_state": {k: v.detach().cpu() for k, v in method.state_dict().items()
                                                if not k.startswith("trunk.")},
                               "adapted_from": str(path)})
    return result
