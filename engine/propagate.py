"""The Propagator: carries a keyframe's labels through the video (research spec §3.3 and the
protocols of engine/protocols.py: CRW by default; MAST, LIIR, STT, UVC, ContrastCorr as options).

For each target frame the context is the anchor keyframe (always present, global search) plus the
last `context` frames (radius-limited search); the top-k affinities over all context cells jointly,
softmaxed at `temperature`, mix the context's soft labels into the target's.  Soft labels are fed
back as they are.  `pad_context` reproduces CRW's bookkeeping, where the short-term memory starts
as `context` copies of the keyframe.

The protocol is the encoder spec's (`spec.protocol` and its hints), unless `params.protocol` names
another; any protocol field set in PropagationParams (not None) overrides it.  With a CRW encoder
and default params the CRW code path below is exactly the one the golden test pins.

`run()` is a generator yielding one `FrameResult` per frame as soon as it is ready; memory is the
references' features and labels, never the video's.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator, Mapping, Union

import numpy as np
import torch

from . import affinity, protocols
from .errors import ConfigError, LabelError
from .features import FeatureExtractor, processing_size, resize_frame
from .label_codec import KeypointCodec, MaskCodec, hard_labels
from .labels import Keypoints

Label = Union[np.ndarray, Keypoints]


@dataclass
class PropagationParams:
    # Protocol fields: None = the protocol's value (engine/protocols.py; CRW: 10, 20, 12, 0.05, padded).
    topk: "int | None" = None
    context: "int | None" = None       # short-term frames (CRW --videoLen)
    radius: "float | None" = None      # feature cells at scale 1 (circle: strict <, square: |d| <=); protocols.resolve
    temperature: "float | None" = None
    pad_context: "bool | None" = None  # CRW: short-term memory starts as copies of the keyframe
    precision: str = "auto"     # "fp32" exact; "bf16" = bf16 search + fp32 re-scoring of candidates
    max_side: "int | None" = 1280  # processing resolution cap (long side, pixels; protocols without a test resolution)
    scale: float = 1.0          # < 1 for fast previews
    keypoint_sigma: float = 0.5
    keypoint_topn: int = 3
    tile: int = 12
    protocol: "str | None" = None      # crw | mast | liir | stt | uvc | contrastcorr; None = the encoder spec's
    references: "str | None" = None
    key_copies: "int | None" = None
    key_search: "str | None" = None
    window: "str | None" = None
    border: "str | None" = None
    aggregate: "str | None" = None
    affinity: "str | None" = None
    compact_sigma: "float | None" = None
    compact_threshold: "float | None" = None
    memory: "str | None" = None
    label_sampling: "str | None" = None
    decode: "str | None" = None
    short_side: "int | None" = None
    size_multiple: "int | None" = None

    def validate(self) -> "PropagationParams":
        checks = [
            (self.topk is None or self.topk >= 1, "topk must be >= 1"),
            (self.context is None or self.context >= 0, "context must be >= 0"),
            (self.radius is None or self.radius > 0, "radius must be > 0"),
            (self.temperature is None or self.temperature > 0, "temperature must be > 0"),
            (self.precision in ("auto", "fp32", "bf16", "fp16"), "precision must be auto, fp32, bf16 or fp16"),
            (0 < self.scale <= 1, "scale must be in (0, 1]"),
            (self.max_side is None or self.max_side >= 64, "max_side must be >= 64"),
            (self.tile >= 1, "tile must be >= 1"),
            (self.protocol is None or self.protocol in protocols.NAMES,
             f"protocol must be one of {protocols.NAMES}"),
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
        given = (params or PropagationParams()).validate()
        self.protocol = protocols.resolve(getattr(encoder, "spec", None), given)
        # self.params shows the values in force (what benchmarks and the UI report).
        resolved = {f: getattr(self.protocol, f) for f in protocols.FIELDS if hasattr(given, f)}
        self.params = replace(given, protocol=self.protocol.name, pad_context=self.protocol.copies > 0, **resolved)
        self.device = _resolve_device(device)
        precision = self.params.precision
        if precision == "auto":
            from .features import resolve_precision
            precision = resolve_precision("auto", self.device)  # bf16 only where the CPU has it natively
        self.precision = precision
        # Batching frames does not pay on CPU (measured 55 vs 82 ms/frame, bf16, batch 1 vs 4).
        # A run reads each frame once, so a big feature cache only grows memory with video length
        # (measured +572 MB at 2000 vs 100 frames with 512 MB, +66 MB with 64 MB); 32 MB keeps recent frames for
        # re-propagation after a correction and for the inspector.
        self.extractor = extractor or FeatureExtractor(encoder.to(self.device), device=str(self.device),
                                                       precision="fp32" if precision == "fp32" else "auto",
                                                       batch_size=1 if self.device.type == "cpu" else 4,
                                                       cache_mb=32)
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
        if self.protocol.short_side:
            pw, ph = protocols.processing_size(w, h, self.protocol, self.params.scale)
        else:
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
        pr = self.protocol
        if pr.window == "none":
            return None
        key = (grid, pr.radius, self.params.tile, pr.window, pr.border)
        if key not in self._geometry:
            self._geometry[key] = affinity.WindowGeometry.build(*grid, pr.radius, self.params.tile, self.device,
                                                                shape=pr.window, border=pr.border)
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
            r.mask = codec.decode(soft, minmax=self.protocol.decode == "minmax")
        else:
            r.keypoints = codec.decode(soft)
        timings["decode_ms"] = (time.perf_counter() - t) * 1e3
        return r

    def _encode(self, codec, label, video, grid):
        """A label (keyframe, or a hard memory mask) as soft map [C, h, w] on the grid."""
        if codec.kind != "mask":
            return codec.encode(label, grid, self.device)
        (pw, ph), _ = self.frame_grid(video)
        w, h = video.size
        s = self.extractor.encoder.spec.stride
        return codec.encode(label, grid, self.device, sampling=self.protocol.label_sampling,
                            cell=(s * h / ph, s * w / pw))

    def _entry(self, feat, rows, labels, geo, step):
        """What the memory keeps of a frame: only the search operands its protocol reads."""
        pr = self.protocol
        e = _Ref(rows, labels, step)
        windowed = pr.window != "none"
        if not windowed or (step == 0 and pr.key_search == "global"):
            # the global-search operand: reduced precision for the joint top-k (re-scored in fp32),
            # float32 for UVC's per-reference softmax, which needs every score
            e.search = feat.to(self._dtype()) if pr.aggregate == "joint" else feat.float()
        if windowed and (step > 0 or pr.key_search == "window" or (pr.references == "recent" and pr.copies > 0)):
            exact = pr.topk == 0   # one softmax over raw scores: float32 (see window_softmax_multi)
            e.regions = affinity.KeyRegions(feat, geo, torch.float32 if exact else self._dtype())
            if exact:
                e.label_regions = affinity.row_regions(labels, geo)
            if pr.roi_gap:
                e.search = feat.float()   # long-term ROI search re-samples the feature map
        return e

    def _memory_labels(self, codec, soft, result, video, grid):
        """Labels a finished frame leaves in memory: its soft map, or the one-hot of its argmax
        (MAST/LIIR keep the decoded full-resolution mask, re-sampled onto the grid, spec §4.3)."""
        if self.protocol.memory == "soft":
            return soft
        if codec.kind == "mask":
            return self._encode(codec, result.mask, video, grid).reshape(codec.channels, -1).t().contiguous()
        return hard_labels(soft)

    def _propagate(self, video, label, start, order, cancel):
        import time
        pr = self.protocol
        codec = self._codec(video, label)
        _, grid = self.frame_grid(video)
        geo = self._geometry_for(grid)
        n = grid[0] * grid[1]

        t0 = time.perf_counter()
        key_frame = video.frame(start)
        t1 = time.perf_counter()
        key_feat = self._features(video, [(start, key_frame)])[0]
        t2 = time.perf_counter()
        key_soft = self._encode(codec, label, video, grid)
        yield self._result(codec, key_soft, start, start, True,
                           {"decode_video_ms": (t1 - t0) * 1e3, "features_ms": (t2 - t1) * 1e3})
        key_lab = key_soft.reshape(codec.channels, -1).t().contiguous()  # [N, C]
        # References by step from the keyframe (0 = the keyframe); only what later targets need is kept.
        memory = {0: self._entry(key_feat, key_feat.t().contiguous(), key_lab, geo, 0)}

        batch = max(1, self.extractor.batch_size)
        frames = self._frames(video, order)
        pending: deque = deque()
        step = 0
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
            step += 1
            refs = [memory[s] for s in protocols.reference_steps(pr, step)]
            t0 = time.perf_counter()
            feat_rows = feat.t().contiguous()
            soft = self._step(feat, feat_rows, refs, geo, grid, codec.channels, step)
            timings["affinity_ms"] = (time.perf_counter() - t0) * 1e3
            result = self._result(codec, soft.t().reshape(codec.channels, *grid), index, start, False, timings)
            keep = protocols.retained_steps(pr, step)
            if step in keep:
                labels = self._memory_labels(codec, soft, result, video, grid)
                memory[step] = self._entry(feat, feat_rows, labels, geo, step)
            for s in [s for s in memory if s not in keep]:
                del memory[s]
            yield result

    def _dtype(self):
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def _step(self, feat, feat_rows, refs, geo, grid, channels, target=None) -> torch.Tensor:
        """Soft labels [N, C] of one target (`target` steps after the keyframe) from its references
        (refs[0] = the long-term keyframe)."""
        pr = self.protocol
        if pr.aggregate == "per_reference":
            return self._step_per_reference(feat, refs)
        if pr.topk == 0:
            compact = (pr.compact_sigma, pr.compact_threshold) if pr.affinity == "compact" else None
            far = [r for r in refs if pr.roi_gap and target is not None and target - r.step > pr.roi_gap]
            near = [r for r in refs if not any(r is f for f in far)]
            extra = [affinity.roi_window_partial(feat, r.search, r.labels, grid, int(pr.radius),
                                                 protocols.roi_dilation(target - r.step, pr.roi_gap), pr.temperature)
                     for r in far]
            return affinity.window_softmax_multi(feat, [r.regions for r in near], [r.label_regions for r in near],
                                                 geo, pr.temperature, compact, extra=extra)
        return self._step_joint(feat, feat_rows, refs, geo, grid, channels)

    def _step_per_reference(self, feat, refs) -> torch.Tensor:
        """UVC/ContrastCorr: each reference on its own (global softmax, top-k kept unrenormalised),
        the references' predictions averaged (spec §6.9, §11b-4)."""
        pr = self.protocol
        acc = None
        for r in refs:
            w, cell = affinity.global_topk_softmax(feat, r.search, pr.topk, pr.temperature, pr.affinity == "mutual")
            pred = torch.einsum("nk,nkc->nc", w, r.labels.float()[cell])
            acc = pred if acc is None else acc + pred
        return acc / len(refs)

    def _step_joint(self, feat, feat_rows, refs, geo, grid, channels) -> torch.Tensor:
        """Joint top-k over all references (CRW, STT).

        Candidates are searched as distinct (frame, search) pairs; copies of a frame (CRW's padding)
        tie exactly, so each candidate is then counted as many times as its frame occurs before
        the final top-k, which equals the joint top-k over all copies.  With reduced precision the
        search keeps 2k candidates and re-scores them in float32.
        """
        p, pr = self.params, self.protocol
        n = grid[0] * grid[1]
        coarse = self.precision != "fp32"
        kk = 2 * pr.topk if coarse else pr.topk
        q = feat.to(self._dtype())

        # Distinct (frame, search) slots in reference order; CRW: slot 0 = keyframe (global), then
        # the short-term frames (the keyframe's padding copies first).
        slots, mult, modes, seen = [], [], [], {}
        for i, r in enumerate(refs):
            mode = "global" if pr.window == "none" or (i == 0 and pr.key_search == "global") else "window"
            j = seen.get((id(r), mode))
            if j is None:
                seen[(id(r), mode)] = len(slots)
                slots.append(r)
                mult.append(1)
                modes.append(mode)
            else:
                mult[j] += 1

        vals, slot, cell = [], [], []
        for j, mode in enumerate(modes):
            if mode == "global":
                v0, c0 = affinity.dense_topk_blocked(q, slots[j].search, kk, grid[1])
                vals.append(v0); slot.append(torch.full_like(c0, j)); cell.append(c0)
        win = [j for j, mode in enumerate(modes) if mode == "window"]
        if win:
            v1, f1, c1 = affinity.window_topk_multi(q, [slots[j].regions for j in win], geo, kk)
            # window slots follow the global ones, so the frame index only needs an offset
            vals.append(v1); slot.append(f1 + win[0]); cell.append(c1)
        v, slot, cell = torch.cat(vals, 1), torch.cat(slot, 1), torch.cat(cell, 1)
        v, j = v.topk(min(kk, v.shape[1]), dim=1)
        slot, cell = torch.gather(slot, 1, j), torch.gather(cell, 1, j)
        if coarse:
            exact = affinity.exact_scores(feat_rows, [e.rows for e in slots], slot, cell)
            v = exact.masked_fill(torch.isinf(v), affinity.NEG)
        copies = max(mult)
        if copies > 1:
            m = torch.tensor(mult, device=slot.device)[slot]
            rank = torch.arange(copies, device=slot.device).repeat_interleave(v.shape[1])
            v = v.repeat(1, copies).masked_fill(rank[None] >= m.repeat(1, copies), affinity.NEG)
            slot, cell = slot.repeat(1, copies), cell.repeat(1, copies)
        v, j = v.topk(pr.topk, dim=1)
        slot, cell = torch.gather(slot, 1, j), torch.gather(cell, 1, j)
        w = torch.softmax(v / pr.temperature, dim=1)  # [N, k]
        labels = torch.stack([torch.cat([e.labels, e.labels.new_zeros(1, channels)]) for e in slots])  # [S, N+1, C]
        picked = labels.flatten(0, 1)[(slot * (n + 1) + cell).flatten()].view(n, -1, channels)
        return torch.einsum("nk,nkc->nc", w, picked.float())


class _Ref:
    """One reference frame in memory: feature rows [N, C] (fp32 re-scoring), labels [N, C], and the
    search operands its protocol needs (global: [C, N]; windowed: KeyRegions; MAST: label regions)."""
    __slots__ = ("rows", "labels", "step", "search", "regions", "label_regions")

    def __init__(self, rows, labels, step=0):
        self.rows, self.labels, self.step = rows, labels, step
        self.search = self.regions = self.label_regions = None
