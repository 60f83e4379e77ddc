"""Labels: index masks (DAVIS palette PNGs) and named keypoints, with their file formats.

Masks are `uint8[H, W]`, 0 = background, 1..255 = object ids.  Keypoints are `float32[K, 2]` (x, y in
pixels) plus `bool[K]` visible; an invisible point has no meaningful position.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import atomic
from .errors import LabelError


def davis_palette() -> np.ndarray:
    """The DAVIS / PASCAL-VOC colour map: uint8[256, 3], index 1 = (128, 0, 0), 2 = (0, 128, 0), ..."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


PALETTE = davis_palette()


def read_mask(path: "str | os.PathLike", size: "tuple[int, int] | None" = None) -> np.ndarray:
    """Read an index mask PNG as uint8[H, W] ids.

    Palette and greyscale PNGs give their indices.  A 0/255 greyscale mask (the DAVIS-2016 format)
    becomes 0/1.  `size` = (w, h) the mask must have; any other size is a LabelError.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.array(im)
    except FileNotFoundError:
        raise LabelError(path, "mask file does not exist") from None
    except Exception as exc:  # Pillow raises many types for unreadable files
        raise LabelError(path, f"not a readable image ({exc})") from None
    if mode not in ("P", "L", "1", "I", "I;16"):
        if arr.ndim == 3 and np.all(arr[..., :3] == arr[..., :1]):
            arr = arr[..., 0]
        else:
            raise LabelError(path, f"mask must be an index (palette or greyscale) PNG, got colour mode {mode}")
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.max(initial=0) > 255:
        raise LabelError(path, f"mask has id {int(arr.max())} > 255")
    arr = arr.astype(np.uint8)
    if mode != "P":
        values = np.unique(arr)
        if set(values.tolist()) <= {0, 255} and 255 in values:
            arr = (arr == 255).astype(np.uint8)
    if size is not None and (arr.shape[1], arr.shape[0]) != tuple(size):
        raise LabelError(path, f"mask is {arr.shape[1]}x{arr.shape[0]} but the video frames are {size[0]}x{size[1]}")
    return arr


def mask_to_image(mask: np.ndarray) -> Image.Image:
    im = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="P")
    im.putpalette(PALETTE.ravel().tolist())
    return im


def write_mask(path: "str | os.PathLike", mask: np.ndarray) -> None:
    """Write uint8[H, W] ids as a DAVIS palette PNG, atomically."""
    if mask.ndim != 2:
        raise LabelError(path, f"mask must be 2-D, got shape {mask.shape}")
    im = mask_to_image(mask)
    atomic.write_with(path, lambda tmp: im.save(tmp, format="PNG"))


def object_ids(mask: np.ndarray) -> list[int]:
    """Object ids present in a mask (background excluded), ascending."""
    return [int(v) for v in np.unique(mask) if v != 0]


@dataclass
class KeypointSchema:
    names: list[str]
    colours: list[tuple[int, int, int]] = field(default_factory=list)
    skeleton: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self):
        if len(set(self.names)) != len(self.names):
            raise LabelError(None, f"keypoint names must be unique: {self.names}")
        if not self.colours:
            self.colours = [tuple(int(c) for c in PALETTE[1 + i % 255]) for i in range(len(self.names))]
        for a, b in self.skeleton:
            if not (0 <= a < len(self.names) and 0 <= b < len(self.names)):
                raise LabelError(None, f"skeleton edge ({a}, {b}) names a keypoint that does not exist")

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "colours": [list(c) for c in self.colours],
                "skeleton": [list(e) for e in self.skeleton]}

    @classmethod
    def from_dict(cls, d: dict) -> "KeypointSchema":
        return cls(names=list(d["names"]), colours=[tuple(c) for c in d.get("colours", [])],
                   skeleton=[tuple(e) for e in d.get("skeleton", [])])


@dataclass
class Keypoints:
    """Points of one frame: xy float32[K, 2] in pixels, visible bool[K]."""
    xy: np.ndarray
    visible: np.ndarray

    def __post_init__(self):
        self.xy = np.asarray(self.xy, np.float32).reshape(-1, 2)
        self.visible = np.asarray(self.visible, bool).reshape(-1)
        if len(self.visible) != len(self.xy):
            raise LabelError(None, f"{len(self.xy)} points but {len(self.visible)} visibility flags")

    def check_inside(self, size: tuple[int, int], path=None) -> None:
        w, h = size
        for k in np.flatnonzero(self.visible):
            x, y = self.xy[k]
            if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < w and 0 <= y < h):
                raise LabelError(path, f"keypoint {k} at ({x:.1f}, {y:.1f}) lies outside the {w}x{h} frame")


def read_keypoints(path: "str | os.PathLike", size: "tuple[int, int] | None" = None) -> tuple[KeypointSchema, Keypoints]:
    """Read one frame's keypoints from JSON.

    Format: {"names": [...], "points": [[x, y] or null, ...], optional "visible": [bool...],
    "skeleton": [[i, j], ...], "colours": [[r, g, b], ...]}.  A null point is absent.
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabelError(path, "keypoint file does not exist") from None
    except (OSError, ValueError) as exc:
        raise LabelError(path, f"not valid JSON ({exc})") from None
    try:
        names = list(d["names"])
        pts = d["points"]
        if len(pts) != len(names):
            raise LabelError(path, f"{len(names)} names but {len(pts)} points")
        visible = d.get("visible", [p is not None for p in pts])
        xy = np.array([[np.nan, np.nan] if p is None else [float(p[0]), float(p[1])] for p in pts], np.float32).reshape(-1, 2)
        visible = [bool(v) and p is not None for v, p in zip(visible, pts)]
        schema = KeypointSchema(names=names, colours=[tuple(c) for c in d.get("colours", [])],
                                skeleton=[tuple(e) for e in d.get("skeleton", [])])
    except LabelError as exc:
        raise LabelError(path, exc.reason) from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise LabelError(path, f"malformed keypoint JSON ({exc!r}); expected names and points") from None
    kp = Keypoints(xy, visible)
    if size is not None:
        kp.check_inside(size, path)
    return schema, kp


def keypoints_to_dict(schema: KeypointSchema, kp: Keypoints) -> dict:
    d = schema.to_dict()
    d["points"] = [[float(x), float(y)] if v else None for (x, y), v in zip(kp.xy, kp.visible)]
    d["visible"] = [bool(v) for v in kp.visible]
    return d


def write_keypoints(path: "str | os.PathLike", schema: KeypointSchema, kp: Keypoints) -> None:
    atomic.write_text(path, json.dumps(keypoints_to_dict(schema, kp), indent=1))
