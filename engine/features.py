"""Batched, cached feature extraction: device and precision choice, processing resolution.

Features are computed once per (video, model, processing size, precision, frame) and kept in a
byte-bounded LRU, because propagation re-reads every frame's features up to `context` times.
Whatever precision the trunk runs in, features come back as float32 and are L2-normalised in
float32: affinities and top-k are sensitive to rounding (research spec §11a-18).

CPU precision "auto": bf16 autocast with channels-last tensors where the CPU has native bf16
(AMX / AVX512-BF16), fp32 otherwise.  Measured with scripts/bench_features.py on this project's
2-core Xeon (AMX-BF16), torch 2.13, crw-r18-s8 at 854x480, 2 threads, quiet machine: fp32 190 ms
per frame, bf16+channels-last 55 ms (3.4x) at batch 1, 82 vs 216 ms (2.6x) at batch 4; per-cell
cosine against fp32 on the golden frame >= 0.9999.  bf16 without channels-last gains far less
(1.1-1.5x), fp32 channels-last ~1.15x (and is no longer bitwise equal to the reference), CPU fp16
is slower than fp32.  CPUs without native bf16 were not available to measure; oneDNN emulates
bf16 there, so fp32 is kept.  Note that on this CPU batch 1 is faster per frame than batch 4.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch

from .errors import ConfigError
from .models.specs import Encoder

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: "str | torch.device" = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(None, f"device {str(device)!r} requested but no CUDA GPU is available")
    return dev


def cpu_has_fast_bf16() -> bool:
    """Native bf16 instructions (AMX tiles or AVX512-BF16).

    oneDNN also "supports" bf16 on plain AVX-512 by emulation, which is slower than fp32, so its
    own flag is not the right test.
    """
    try:
        native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
        return bool(native and torch.backends.mkldnn.is_available())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(None, f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"


def processing_size(w: int, h: int, max_side: "int | None" = None, scale: float = 1.0) -> tuple[int, int]:
    """(w', h') at which frames are fed to the encoder: aspect kept, long side capped at max_side,
    then times `scale` (a preview at scale 0.5 is half the normal processing size, whatever the cap)."""
    if w < 1 or h < 1:
        raise ConfigError(None, f"frame size must be positive, got {w}x{h}")
    if not scale > 0:
        raise ConfigError(None, f"scale must be > 0, got {scale}")
    s = float(scale)
    if max_side is not None:
        if max_side < 1:
            raise ConfigError(None, f"max_side must be >= 1, got {max_side}")
        s *= min(1.0, max_side / max(w, h))
    if s == 1.0:
        return int(w), int(h)
    # Round half up (not banker's rounding) so the same size never depends on parity.
    return max(1, int(w * s + 0.5)), max(1, int(h * s + 0.5))


def resize_frame(rgb: np.ndarray, size: "tuple[int, int]") -> np.ndarray:
    """RGB uint8 frame resized to size = (w, h) with area averaging; returned as is when equal."""
    w, h = size
    if rgb.shape[1] == w and rgb.shape[0] == h:
        return rgb
    return cv2.resize(rgb, (int(w), int(h)), interpolation=cv2.INTER_AREA)


class FeatureExtractor:
    def __init__(self, encoder: Encoder, device: "str | torch.device" = "auto", precision: str = "auto",
                 batch_size: int = 4, cache_mb: float = 512, channels_last: "bool | None" = None):
        if batch_size < 1:
            raise ConfigError(None, f"batch_size must be >= 1, got {batch_size}")
        if cache_mb < 0:
            raise ConfigError(None, f"cache_mb must be >= 0, got {cache_mb}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.encoder = encoder.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.cache_bytes = int(cache_mb * 2 ** 20)
        # Reduced precision runs the trunk channels-last: that is the layout oneDNN/cuDNN's fast
        # bf16/fp16 kernels want.  fp32 stays NCHW: bitwise equal to the reference implementation.
        self.channels_last = self.precision != "fp32" if channels_last is None else bool(channels_last)
        self._ensure_layout()
        self._cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    # -- extraction ----------------------------------------------------------------------------
    def _ensure_layout(self) -> None:
        # Conv kernels follow the *weights'* layout as well as the input's, so an encoder left
        # channels-last by another (reduced-precision) extractor would change fp32 results.
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        w = next((p for p in self.encoder.parameters() if p.dim() == 4), None)
        if w is not None and not w.is_contiguous(memory_format=fmt):
            self.encoder.to(memory_format=fmt)

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def _check(self, frames: Sequence[np.ndarray]) -> tuple[int, int]:
        if len(frames) == 0:
            raise ConfigError(None, "no frames to extract features from")
        shape = None
        for i, f in enumerate(frames):
            if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                desc = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
                raise ConfigError(None, f"frame {i}: expected an HxWx3 uint8 RGB array, got {desc}")
            if shape is None:
                shape = f.shape
            elif f.shape != shape:
                raise ConfigError(None, f"frames of one batch must share a size: {shape[:2]} vs {f.shape[:2]}")
        h, w = shape[:2]
        if min(h, w) < self.encoder.min_side:
            raise ConfigError(None, f"frame {w}x{h} is too small for {self.encoder.spec.name} "
                                    f"(needs >= {self.encoder.min_side} pixels per side)")
        return h, w

    def extract(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """float32 [B, C, ceil(H/s), ceil(W/s)] on self.device, normalised as the spec says."""
        self._check(frames)
        self._ensure_layout()
        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                chunk = np.stack(frames[i:i + self.batch_size])
                rgb = torch.from_numpy(chunk).to(self.device, non_blocking=True)
                x = self.encoder.preprocess(rgb)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with self._autocast():
                    y = self.encoder.trunk(x)
                # Back to NCHW float32 before normalising: consumers flatten cells row-major.
                out.append(self.encoder.normalize(y.float().contiguous()))
        return out[0] if len(out) == 1 else torch.cat(out)

    # -- cache ---------------------------------------------------------------------------------
    def _key(self, video_key: str, index: int, frame: np.ndarray) -> tuple:
        return (video_key, self.encoder.spec.name, tuple(frame.shape[:2]), self.precision, int(index))

    def is_cached(self, video_key: str, index: int, frame_hw: tuple[int, int]) -> bool:
        """Whether frame `index` at processing size `frame_hw` (h, w) is in the cache."""
        key = (video_key, self.encoder.spec.name, tuple(frame_hw), self.precision, int(index))
        with self._lock:
            return key in self._cache

    def features(self, video_key: str, index: int, frame: np.ndarray) -> torch.Tensor:
        """Features [C, h, w] of one frame, from the cache when present (do not modify them in place)."""
        return self.features_batch(video_key, [(index, frame)])[0]

    def features_batch(self, video_key: str, items: Iterable[tuple[int, np.ndarray]]) -> list[torch.Tensor]:
        """Features for (index, frame) pairs, in order; all cache misses go through one batched pass."""
        items = list(items)
        keys = [self._key(video_key, i, f) for i, f in items]
        found: dict[tuple, torch.Tensor] = {}
        with self._lock:
            for k in keys:
                t = self._cache.get(k)
                if t is not None:
                    self._cache.move_to_end(k)
                    found[k] = t
        todo: dict[tuple, np.ndarray] = {}
        for k, (_, f) in zip(keys, items):
            if k not in found and k not in todo:
                todo[k] = f
        self.hits += len(keys) - sum(1 for k in keys if k in todo)
        self.misses += len(todo)
        if todo:
            # Frames of different sizes (a rare mix) cannot share a batch.
            by_size: dict[tuple, list[tuple]] = {}
            for k in todo:
                by_size.setdefault(k[2], []).append(k)
            for group in by_size.values():
                feats = self.extract([todo[k] for k in group])
                # clone(): a cached view would pin the whole batch's storage after its siblings are evicted.
                feats = [feats[0]] if len(group) == 1 else [f.clone() for f in feats]
                for k, t in zip(group, feats):
                    found[k] = t
                    self._store(k, t)
        return [found[k] for k in keys]

    def _store(self, key: tuple, t: torch.Tensor) -> None:
        size = t.numel() * t.element_size()
        if size > self.cache_bytes:
            return
        with self._lock:
            old = self._cache.pop(key, None)
            if old is not None:
                self._cached_bytes -= old.numel() * old.element_size()
            self._cache[key] = t
            self._cached_bytes += size
            while self._cached_bytes > self.cache_bytes:
                _, ev = self._cache.popitem(last=False)
                self._cached_bytes -= ev.numel() * ev.element_size()

    @property
    def cached_bytes(self) -> int:
        return self._cached_bytes

    def __len__(self) -> int:
        return len(self._cache)

    def clear_cache(self, video_key: "str | None" = None) -> None:
        """Drop everything, or one video's entries (e.g. after its frames changed on disk)."""
        with self._lock:
            for k in [k for k in self._cache if video_key is None or k[0] == video_key]:
                t = self._cache.pop(k)
                self._cached_bytes -= t.numel() * t.element_size()
