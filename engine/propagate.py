"""The Propagator: carries a keyframe's labels through the video (CRW protocol, research spec §3.3).

For each target frame the context is the anchor keyframe (always present, global search) plus the
last `context` frames (radius-limited search); the top-k affinities over all context cells jointly,
softmaxed at `temperature`, mix the context's soft labels into the target's.  Soft labels are fed
back as they are.  `pad_context` reproduces CRW's bookkeeping, where the short-term memory starts
as `context` copies of the keyframe.

`run()` is a generator yielding one `FrameResult` per frame as soon as it is ready; memory is the
context's features and labels, never the video's.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Iterator, Mapping, Union

import numpy as np
import torch

from . import affinity
from .errors import ConfigError, LabelError
from .features import FeatureExtractor, processing_size, resize_frame
from .label_codec import KeypointCodec, MaskCodec
from .labels import Keypoints

Label = Union[np.ndarray, Keypoints]


@dataclass
class PropagationParams:
    topk: int = 10
    context: int = 20           # short-term frames (CRW --videoLen)
    radius: float = 12.0        # feature cells, strict <, short-term frames only
    temperature: float = 0.05
    pad_context: bool = True    # CRW: short-term memory starts as copies of the keyframe
    precision: str = "auto"     # "fp32" exact; "bf16" = bf16 search + fp32 re-scoring of candidates
    max_side: "int | None" = 1280  # processing resolution cap (long side, pixels)
    scale: float = 1.0          # < 1 for fast previews
    keypoint_sigma: float = 0.5
    keypoint_topn: int = 3
    tile: int = 12

    def validate(self) -> "PropagationParams":
        checks = [
            (self.topk >= 1, "topk must be >= 1"),
            (self.context >= 0, "context must be >= 0"),
            (self.radius > 0, "radius must be > 0"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.precision in ("auto", "fp32", "bf16", "fp16"), "precision must be auto, fp32, bf16 or fp16"),
            (0 < self.scale <= 1, "scale must be in (0, 1]"),
            (self.max_side is None or self.max_side >= 64, "max_side must be >= 64"),
            (self.tile >= 1, "tile must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(None, f"{msg} (got {asdict(self)})")
        return self


class CancelToken:
    def __init__(self):
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@dataclass
class FrameResult:
    index: int
    soft: np.ndarray                      # float32[C, h, w] (exact; stores may keep float16)
    confidence: float
    keyframe: int
    is_keyframe: bool
    mask: "np.ndarray | None" = None      # uint8[H, W] object ids
    keypoints: "Keypoints | None" = None
    timings: dict = field(default_factory=dict)


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(None, "device 'cuda' requested but no CUDA GPU is available")
    return torch.device(device)


class Propagator:
    def __init__(self, encoder, params: "PropagationParams | None" = None, device: str = "auto",
                 extractor: "FeatureExtractor | None" = None):
        self.params = (params or PropagationParams()).validate()
        self.device = _resolve_device(device)
        precision = self.params.precision
        if precision == "auto":
            from .features import resolve_precision
            precision = resolve_precision("auto", self.device)  # bf16 only where the CPU has it natively
        self.precision = precision
        # Batching frames does not pay on CPU (measured 55 vs 82 ms/frame, bf16, batch 1 vs 4).
        # A run reads each frame once, so a big feature cache only grows memory with video length
        # (measured +572 MB at 2000 vs 100 frames with 512 MB); 64 MB keeps recent frames for
        # re-propagation after a correction and for the inspector.
        self.extractor = extractor or FeatureExtractor(encoder.to(self.device), device=str(self.device),
                                                       precision="fp32" if precision == "fp32" else "auto",
                                                       batch_size=1 if self.device.type == "cpu" else 4,
                                                       cache_mb=64)
        self._geometry: dict = {}

    # -- public -------------------------------------------------------------------------------
    def run(self, video, keyframes: Mapping[int, Label], start: int, direction: str = "forward",
            stop: "int | None" = None, cancel: "CancelToken | None" = None) -> Iterator[FrameResult]:
        if direction not in ("forward", "backward"):
            raise ConfigError(None, f"direction must be 'forward' or 'backward', got {direction!r}")
        n = len(video)
        if start not in keyframes:
            raise LabelError(None, f"frame {start} is not a keyframe (keyframes: {sorted(keyframes)})")
        if not 0 <= start < n:
            raise LabelError(None, f"keyframe {start} is outside the video (0..{n - 1})")
        order = self._order(n, keyframes, start, direction, stop)
        yield from self._propagate(video, keyframes[start], start, order, cancel)

    def frame_grid(self, video) -> tuple[tuple[int, int], tuple[int, int]]:
        """(processing (w, h), feature grid (h, w)) for this video."""
        w, h = video.size
        pw, ph = processing_size(w, h, self.params.max_side, self.params.scale)
        s = self.extractor.encoder.spec.stride
        return (pw, ph), (-(-ph // s), -(-pw // s))

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _order(n, keyframes, start, direction, stop) -> list[int]:
        if direction == "forward":
            end = min([k for k in keyframes if k > start] + [n if stop is None else min(stop, n)])
            return list(range(start + 1, end))
        end = max([k for k in keyframes if k < start] + [-1 if stop is None else max(stop, -1)])
        return list(range(start - 1, end, -1))

    def _codec(self, video, label, path=None):
        if isinstance(label, Keypoints):
            return KeypointCodec(label, video.size, self.params.keypoint_sigma, self.params.keypoint_topn, path)
        mask = np.asarray(label)
        w, h = video.size
        if mask.shape != (h, w):
            raise LabelError(path, f"mask is {mask.shape[1] if mask.ndim == 2 else mask.shape}x"
                                   f"{mask.shape[0]} but the video frames are {w}x{h}")
        return MaskCodec(mask.astype(np.uint8), path)

    def _features(self, video, items):
        (pw, ph), _ = self.frame_grid(video)
        key = f"{getattr(video, 'path', id(video))}"
        prepared = [(i, resize_frame(f, (pw, ph))) for i, f in items]
        feats = self.extractor.features_batch(key, prepared)
        return [f.reshape(f.shape[0], -1) for f in feats]

    def _geometry_for(self, grid):
        key = (grid, self.params.radius, self.params.tile)
        if key not in self._geometry:
            self._geometry[key] = affinity.WindowGeometry.build(*grid, self.params.radius, self.params.tile, self.device)
        return self._geometry[key]

    def _frames(self, video, order):
        """Frames in propagation order; backward runs read forward in chunks and reverse them."""
        if not order:
            return
        if order[0] <= order[-1]:
            yield from video.frames(order[0], order[-1] + 1)
            return
        hi = order[0] + 1
        lo_end = order[-1]
        while hi > lo_end:
            lo = max(lo_end, hi - 16)
            chunk = list(video.frames(lo, hi))
            yield from reversed(chunk)
            hi = lo

    def _result(self, codec, soft, index, anchor, is_key, timings) -> FrameResult:
        import time
        t = time.perf_counter()
        r = FrameResult(index=index, soft=soft.float().cpu().numpy(), confidence=codec.confidence(soft),
                        keyframe=anchor, is_keyframe=is_key, timings=timings)
        if codec.kind == "mask":
            r.mask = codec.decode(soft)
        else:
            r.keypoints = codec.decode(soft)
        timings["decode_ms"] = (time.perf_counter() - t) * 1e3
        return r

    def _propagate(self, video, label, start, order, cancel):
        import time
        p = self.params
        codec = self._codec(video, label)
        _, grid = self.frame_grid(video)
        geo = self._geometry_for(grid)
        n = grid[0] * grid[1]

        t0 = time.perf_counter()
        key_frame = video.frame(start)
        t1 = time.perf_counter()
        key_feat = self._features(video, [(start, key_frame)])[0]
        t2 = time.perf_counter()
        key_soft = codec.encode(label, grid, self.device)
        yield self._result(codec, key_soft, start, start, True,
                           {"decode_video_ms": (t1 - t0) * 1e3, "features_ms": (t2 - t1) * 1e3})
        key_lab = key_soft.reshape(codec.channels, -1).t().contiguous()  # [N, C]
        key_rows = key_feat.t().contiguous()
        key_search = key_feat.to(self._dtype())  # the keyframe's global-search operand, built once

        # Short-term memory: (feature rows [N, C], labels [N, C], KeyRegions); copies share storage.
        memory: deque = deque(maxlen=p.context)
        if p.pad_context:
            key_entry = (key_rows, key_lab, affinity.KeyRegions(key_feat, geo, self._dtype()))
            memory.extend([key_entry] * p.context)

        batch = max(1, self.extractor.batch_size)
        frames = self._frames(video, order)
        pending: deque = deque()
        while True:
            if cancel is not None and cancel.is_set():
                return
            if not pending:
                t0 = time.perf_counter()
                chunk = [next(frames, None) for _ in range(batch)]
                chunk = [c for c in chunk if c is not None]
                if not chunk:
                    return
                t1 = time.perf_counter()
                feats = self._features(video, chunk)
                t2 = time.perf_counter()
                share = {"decode_video_ms": (t1 - t0) * 1e3 / len(chunk), "features_ms": (t2 - t1) * 1e3 / len(chunk)}
                pending.extend((i, f, dict(share)) for (i, _), f in zip(chunk, feats))
            index, feat, timings = pending.popleft()
            t0 = time.perf_counter()
            feat_rows = feat.t().contiguous()
            soft = self._step(feat, feat_rows, (key_rows, key_lab, key_search), memory, geo, n, codec.channels)
            timings["affinity_ms"] = (time.perf_counter() - t0) * 1e3
            if p.context:
                memory.append((feat_rows, soft, affinity.KeyRegions(feat, geo, self._dtype())))
            yield self._result(codec, soft.t().reshape(codec.channels, *grid), index, start, False, timings)

    def _dtype(self):
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def _step(self, feat, feat_rows, keyframe, memory, geo, n, channels) -> torch.Tensor:
        """Soft labels [N, C] of one target from the keyframe and the short-term memory.

        Candidates are searched as distinct (frame, cell) pairs; copies of a frame (CRW's padding)
        tie exactly, so each candidate is then counted as many times as its frame occurs before
        the final top-k, which equals the joint top-k over all copies.  With reduced precision the
        search keeps 2k candidates and re-scores them in float32.
        """
        p = self.params
        coarse = self.precision != "fp32"
        kk = 2 * p.topk if coarse else p.topk
        q = feat.to(self._dtype())

        # Distinct context frames in slot order: slot 0 = keyframe (global), then short-term frames.
        key_rows, key_lab, key_search = keyframe
        slots = [(key_rows, key_lab, None)]
        mult = [1]
        seen: dict = {}
        for entry in memory:
            j = seen.get(id(entry[0]))
            if j is None:
                seen[id(entry[0])] = len(slots)
                slots.append(entry)
                mult.append(1)
            else:
                mult[j] += 1

        v0, c0 = affinity.dense_topk_blocked(q, key_search, kk, geo.w)
        vals, slot, cell = [v0], [torch.zeros_like(c0)], [c0]
        if len(slots) > 1:
            v1, f1, c1 = affinity.window_topk_multi(q, [e[2] for e in slots[1:]], geo, kk)
            vals.append(v1); slot.append(f1 + 1); cell.append(c1)
        v, slot, cell = torch.cat(vals, 1), torch.cat(slot, 1), torch.cat(cell, 1)
        v, j = v.topk(min(kk, v.shape[1]), dim=1)
        slot, cell = torch.gather(slot, 1, j), torch.gather(cell, 1, j)
        if coarse:
            exact = affinity.exact_scores(feat_rows, [e[0] for e in slots], slot, cell)
            v = exact.masked_fill(torch.isinf(v), affinity.NEG)
        copies = max(mult)
        if copies > 1:
            m = torch.tensor(mult, device=slot.device)[slot]
            rank = torch.arange(copies, device=slot.device).repeat_interleave(v.shape[1])
            v = v.repeat(1, copies).masked_fill(rank[None] >= m.repeat(1, copies), affinity.NEG)
            slot, cell = slot.repeat(1, copies), cell.repeat(1, copies)
        v, j = v.topk(p.topk, dim=1)
        slot, cell = torch.gather(slot, 1, j), torch.gather(cell, 1, j)
        w = torch.softmax(v / p.temperature, dim=1)  # [N, k]
        labels = torch.stack([torch.cat([e[1], e[1].new_zeros(1, channels)]) for e in slots])  # [S, N+1, C]
        picked = labels.flatten(0, 1)[(slot * (n + 1) + cell).flatten()].view(n, -1, channels)
        return torch.einsum("nk,nkc->nc", w, picked.float())
