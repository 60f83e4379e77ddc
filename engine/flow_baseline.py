"""A non-learned baseline: chain the keyframe's labels along OpenCV DIS optical flow.

This is what a user might pick instead of a learned affinity, so the default model is measured
against it.  It has the Propagator's `run()` contract (same frame order, keyframes, stop, cancel,
`FrameResult`s), so the evaluation runners and the session accept it unchanged.

Masks: per-object soft maps at frame resolution are pulled from the previous frame with the
backward flow (target -> previous), bilinearly, then argmax; keeping soft maps rather than hard
ids avoids the holes and aliasing that warping an id image accumulates.  Keypoints: moved by the
forward flow (previous -> target) sampled bilinearly at the point; a point that leaves the frame
becomes absent.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Mapping

import cv2
import numpy as np
import torch

from .errors import ConfigError, LabelError
from .label_codec import MaskCodec
from .labels import Keypoints
from .propagate import CancelToken, FrameResult, Propagator

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


@dataclass
class FlowParams:
    preset: str = "medium"
    scale: float = 1.0       # flow computed at this fraction of the frame size
    soft_stride: int = 4     # FrameResult.soft is stored at 1/soft_stride resolution

    def validate(self) -> "FlowParams":
        if self.preset not in PRESETS:
            raise ConfigError(None, f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if not 0 < self.scale <= 1:
            raise ConfigError(None, f"scale must be in (0, 1], got {self.scale}")
        if self.soft_stride < 1:
            raise ConfigError(None, f"soft_stride must be >= 1, got {self.soft_stride}")
        return self


class FlowPropagator:
    name = "dis-flow"
    precision = "fp32"
    extractor = None

    def __init__(self, params: "FlowParams | None" = None):
        self.params = (params or FlowParams()).validate()
        self.device = torch.device("cpu")
        self._dis = cv2.DISOpticalFlow_create(PRESETS[self.params.preset])

    def frame_grid(self, video) -> tuple[tuple[int, int], tuple[int, int]]:
        w, h = video.size
        s = self.params.soft_stride
        return (w, h), (-(-h // s), -(-w // s))

    def run(self, video, keyframes: Mapping[int, "np.ndarray | Keypoints"], start: int, direction: str = "forward",
            stop: "int | None" = None, cancel: "CancelToken | None" = None) -> Iterator[FrameResult]:
        if direction not in ("forward", "backward"):
            raise ConfigError(None, f"direction must be 'forward' or 'backward', got {direction!r}")
        n = len(video)
        if start not in keyframes:
            raise LabelError(None, f"frame {start} is not a keyframe (keyframes: {sorted(keyframes)})")
        if not 0 <= start < n:
            raise LabelError(None, f"keyframe {start} is outside the video (0..{n - 1})")
        order = Propagator._order(n, keyframes, start, direction, stop)
        label = keyframes[start]
        prev = video.frame(start)
        if isinstance(label, Keypoints):
            state = _KeypointState(label, video.size)
        else:
            state = _MaskState(np.asarray(label), video.size, self.params.soft_stride)
        yield state.result(start, start, True, {})
        prev_gray = self._gray(prev)
        for i in order:
            if cancel is not None and cancel.is_set():
                return
            t0 = time.perf_counter()
            cur = video.frame(i)
            t1 = time.perf_counter()
            cur_gray = self._gray(cur)
            state.advance(lambda a, b: self._flow(a, b, cur.shape[:2]), prev_gray, cur_gray)
            t2 = time.perf_counter()
            yield state.result(i, start, False, {"decode_video_ms": (t1 - t0) * 1e3, "affinity_ms": (t2 - t1) * 1e3})
            prev_gray = cur_gray

    def _gray(self, rgb: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if self.params.scale < 1:
            h, w = g.shape
            g = cv2.resize(g, (max(8, round(w * self.params.scale)), max(8, round(h * self.params.scale))),
                           interpolation=cv2.INTER_AREA)
        return g

    def _flow(self, a: np.ndarray, b: np.ndarray, full_hw: tuple[int, int]) -> np.ndarray:
        """Flow from gray a to gray b, in full-resolution pixels, shape [H, W, 2]."""
        f = self._dis.calc(a, b, None)
        h, w = full_hw
        if f.shape[:2] != (h, w):
            sy, sx = h / f.shape[0], w / f.shape[1]
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
            f[..., 0] *= sx
            f[..., 1] *= sy
        return f


class _MaskState:
    def __init__(self, mask: np.ndarray, size: tuple[int, int], stride: int):
        w, h = size
        if mask.shape != (h, w):
            raise LabelError(None, f"mask is {mask.shape[1] if mask.ndim == 2 else mask.shape}x"
                                   f"{mask.shape[0]} but the video frames are {w}x{h}")
        self.codec = MaskCodec(mask.astype(np.uint8))
        self.stride = stride
        self.soft = np.stack([(mask == i).astype(np.float32) for i in self.codec.ids])  # [C, H, W]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        self._grid = (xs, ys)

    def advance(self, flow, prev_gray, cur_gray) -> None:
        back = flow(cur_gray, prev_gray)  # for each target pixel, where it was in the previous frame
        mx, my = self._grid[0] + back[..., 0], self._grid[1] + back[..., 1]
        self.soft = np.stack([cv2.remap(c, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                              for c in self.soft])

    def result(self, index, anchor, is_key, timings) -> FrameResult:
        t = time.perf_counter()
        mask = self.codec.ids[self.soft.argmax(0)]
        c, h, w = self.soft.shape
        small = np.stack([cv2.resize(p, (-(-w // self.stride), -(-h // self.stride)), interpolation=cv2.INTER_AREA)
                          for p in self.soft])
        conf = self.codec.confidence(torch.from_numpy(small))
        timings["decode_ms"] = (time.perf_counter() - t) * 1e3
        return FrameResult(index=index, soft=small, confidence=conf, keyframe=anchor, is_keyframe=is_key,
                           mask=mask, timings=timings)


class _KeypointState:
    def __init__(self, keypoints: Keypoints, size: tuple[int, int]):
        keypoints.check_inside(size, None)
        self.size = size
        self.xy = np.asarray(keypoints.xy, np.float32).copy()
        self.visible = np.asarray(keypoints.visible, bool).copy()

    def advance(self, flow, prev_gray, cur_gray) -> None:
        fwd = flow(prev_gray, cur_gray)
        w, h = self.size
        for j in np.flatnonzero(self.visible):
            x, y = self.xy[j]
            d = [cv2.getRectSubPix(fwd[..., c], (1, 1), (float(x), float(y)))[0, 0] for c in (0, 1)]
            nx, ny = x + d[0], y + d[1]
            if 0 <= nx <= w - 1 and 0 <= ny <= h - 1:
                self.xy[j] = (nx, ny)
            else:
                self.visible[j] = False

    def result(self, index, anchor, is_key, timings) -> FrameResult:
        kp = Keypoints(self.xy.copy(), self.visible.copy())
        return FrameResult(index=index, soft=np.zeros((len(self.xy), 1, 1), np.float32),
                           confidence=float(self.visible.mean()) if len(self.visible) else 0.0,
                           keyframe=anchor, is_keyframe=is_key, keypoints=kp, timings=timings)
