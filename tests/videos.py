"""Synthetic test videos written with PyAV, whose frames carry their own index.

Each frame is a grid of 16x16 blocks.  The top two block rows hold the frame index as bits
(black/white blocks, which survive lossy compression at any sane quality); a red block in the
bottom-left corner marks orientation, so a rotated display can be checked.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BLOCK = 16
BITS = 8  # indices 0..255


def pattern(index: int, size=(96, 64)) -> np.ndarray:
    """RGB frame (H, W, 3) encoding `index`; size is (w, h), both multiples of 16, w >= 64."""
    w, h = size
    img = np.full((h, w, 3), 96, np.uint8)
    per_row = w // BLOCK
    for b in range(BITS):
        r, c = divmod(b, per_row)
        if (index >> b) & 1:
            img[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = 255
        else:
            img[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = 0
    img[h - BLOCK:, :BLOCK] = (220, 30, 30)
    # A little per-frame texture so inter-frame coding has something to predict.
    img[h - BLOCK:, BLOCK:, 1] = (np.arange(w - BLOCK, dtype=np.int32) * 3 + index * 5) % 200
    return img


def read_index(rgb: np.ndarray) -> int:
    """Decode the index written by `pattern` (upright frame)."""
    w = rgb.shape[1]
    per_row = w // BLOCK
    value = 0
    for b in range(BITS):
        r, c = divmod(b, per_row)
        block = rgb[r * BLOCK + 4:(r + 1) * BLOCK - 4, c * BLOCK + 4:(c + 1) * BLOCK - 4]
        if block.mean() > 128:
            value |= 1 << b
    return value


def write_video(path, n: int = 48, size=(96, 64), codec: str = "libx264", fps: int = 24,
                gop: int = 12, bframes: int = 2, pts=None, time_base=None, rotation=None,
                options=None, pix_fmt: str = "yuv420p") -> Path:
    """Encode `n` pattern frames.  `pts` (list of ints in `time_base`) gives a variable frame rate
    or a non-zero start; `rotation` (degrees counter-clockwise) writes a display matrix."""
    path = Path(path)
    w, h = size
    with av.open(str(path), "w") as out:
        opts = dict(options or {})
        if codec == "libx264":
            opts.setdefault("x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}")
            opts.setdefault("crf", "18")
        s = out.add_stream(codec, rate=fps, options=opts)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if codec != "libx264":
            s.codec_context.gop_size = gop
            if bframes and codec == "mpeg4":
                s.codec_context.max_b_frames = bframes
        if codec == "mpeg4":
            s.codec_context.bit_rate = 2_000_000
        if time_base is not None:
            s.codec_context.time_base = Fraction(time_base)
            s.time_base = Fraction(time_base)
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(pattern(i, size), format="rgb24")
            if pts is not None:
                frame.pts = int(pts[i])
                frame.time_base = Fraction(time_base)
            for packet in s.encode(frame):
                out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)
    return path


def write_empty(path, codec: str = "libx264", size=(96, 64)) -> Path:
    """A container with a video stream and not a single packet."""
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=24)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        out.start_encoding()  # write the header although no packet follows
    return Path(path)


def write_images(folder, names, size=(96, 64), indices=None) -> Path:
    """Write pattern frames as image files; frame k gets index indices[k] (default k)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        idx = k if indices is None else indices[k]
        Image.fromarray(pattern(idx, size)).save(folder / name)
    return folder
