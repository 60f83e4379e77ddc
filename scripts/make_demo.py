#!/usr/bin/env python
"""Render the procedurally generated demo clip and its exact ground truth into resources/demo/.

    python scripts/make_demo.py [--out resources/demo]

Everything is drawn here from a fixed seed (no third-party footage): a textured background seen by a
slowly panning and zooming camera, and three textured sprites (a noise-perturbed blob, a star, a
rounded rectangle) that move along smooth curved paths, rotate and scale.  Each sprite is an RGBA
image warped into the frame with one affine transform per frame (cv2.warpAffine, premultiplied
colour) and composited back to front; the ground-truth index mask of every frame is the same warped
alpha thresholded at 0.5, painted in the same depth order, so the masks are exact (visible parts
only).  Keypoints are fixed points of the sprites mapped by the same affine transforms; a point is
absent (null) when the pixel under it does not show its own object (occluded or outside the frame).

Outputs (all rewritten on every run):
    demo.mp4                    H.264 (libx264, yuv420p, crf 20, keyframe every 24 frames, 2 B-frames),
                                854x480, 24 fps, 90 frames (3.75 s)
    demo_mask_00000.png         first-frame index mask (DAVIS palette; 0 = background, 1..3 objects)
    demo_masks/NNNNN.png        the index mask of every frame
    demo_keypoints_00000.json   named keypoints of the first frame (engine.labels format)
    demo_keypoints/NNNNN.json   keypoints of every frame

Keypoint coordinates are in pixels with pixel centres at integer coordinates (OpenCV convention):
pixel (row y, column x) covers [x - 0.5, x + 0.5) x [y - 0.5, y + 0.5).

Import it (importlib) to use `build_scene()` / `render_frame(scene, i)` without writing anything.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.labels import KeypointSchema, Keypoints, write_keypoints, write_mask  # noqa: E402

SEED = 20240611
WIDTH, HEIGHT = 854, 480
FPS = 24
NUM_FRAMES = 90
CRF = 20
GOP = 24            # one keyframe a second: seeking lands at most 23 frames from a keyframe
B_FRAMES = 2
BG_SIZE = (1060, 640)  # (w, h) of the background texture the camera looks at
SUPERSAMPLE = 4        # shapes are rasterised at this factor, then area-averaged to soft alpha

# Object ids, front-most last: the rectangle is at the back, the star passes in front of the blob.
RECT, BLOB, STAR = 3, 1, 2
DEPTH_ORDER = (RECT, BLOB, STAR)

KEYPOINT_NAMES = ["blob_centre", "blob_eye", "star_centre", "star_tip",
                  "rect_centre", "rect_mark", "rect_corner"]
KEYPOINT_OWNER = [BLOB, BLOB, STAR, STAR, RECT, RECT, RECT]
KEYPOINT_SKELETON = [(0, 1), (2, 3), (4, 5), (4, 6)]

cv2.setNumThreads(1)  # results must not depend on the thread count


# ---------------------------------------------------------------------------------------- textures

def value_noise(rng: np.random.Generator, size: tuple[int, int], cell: int) -> np.ndarray:
    """Smooth value noise in [0, 1], float32[h, w]: random values on a grid of `cell` px, bicubic."""
    w, h = size
    gw, gh = w // cell + 3, h // cell + 3
    grid = rng.random((gh, gw), dtype=np.float32)
    big = cv2.resize(grid, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[cell:cell + h, cell:cell + w], 0.0, 1.0)


def fbm(rng: np.random.Generator, size: tuple[int, int], cells=(96, 48, 24, 12, 6), gain=0.55) -> np.ndarray:
    """Multi-octave value noise normalised to [0, 1]."""
    out = np.zeros((size[1], size[0]), np.float32)
    amp = 1.0
    for c in cells:
        out += amp * value_noise(rng, size, c)
        amp *= gain
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def colour_ramp(t: np.ndarray, stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """Map t float[h, w] in [0, 1] through a piecewise-linear colour ramp -> float32[h, w, 3] in 0..255."""
    xs = np.array([s for s, _ in stops], np.float32)
    cs = np.array([c for _, c in stops], np.float32)
    return np.stack([np.interp(t, xs, cs[:, k]).astype(np.float32) for k in range(3)], -1)


def make_background(rng: np.random.Generator) -> np.ndarray:
    """Muted natural-looking ground: colour noise, soft pebbles, faint stripes and tiles. float32 RGB."""
    w, h = BG_SIZE
    base = fbm(rng, (w, h), cells=(160, 80, 40, 20, 10, 5))
    img = colour_ramp(base, [(0.0, (62, 74, 58)), (0.35, (104, 112, 84)), (0.6, (140, 128, 100)),
                             (0.8, (120, 134, 142)), (1.0, (186, 180, 160))])
    # A second, independent hue field so that colour varies independently of brightness.
    hue = fbm(rng, (w, h), cells=(200, 100, 50)) - 0.5
    img[..., 0] += 40 * hue
    img[..., 2] -= 30 * hue
    # Faint diagonal stripes (periodic structure, as floors or fields have), modulated by noise.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin((xx * 0.8 + yy * 0.6) * (2 * np.pi / 38.0))
    img += (18 * (stripes - 0.5) * fbm(rng, (w, h), cells=(120, 60)))[..., None]
    # Low-contrast checker tiles in one region band.
    tiles = ((xx // 64 + yy // 64) % 2).astype(np.float32) - 0.5
    band = np.clip(fbm(rng, (w, h), cells=(240, 120)) * 2.5 - 1.0, 0, 1)
    img += (22 * tiles * band)[..., None]
    # Scattered soft pebbles in earthy colours: distinct landmarks.  Each is drawn in its own window.
    peb = np.zeros_like(img)
    pa = np.zeros((h, w), np.float32)
    for _ in range(220):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        ax, ay = rng.uniform(4, 13), rng.uniform(3, 9)
        ang = rng.uniform(0, 180)
        col = colour_ramp(np.array([[rng.random()]], np.float32),
                          [(0.0, (70, 62, 52)), (0.4, (150, 130, 105)), (0.7, (175, 170, 150)),
                           (1.0, (120, 128, 140))])[0, 0] * rng.uniform(0.8, 1.15)
        x0, y0 = max(int(cx) - 16, 0), max(int(cy) - 16, 0)
        x1, y1 = min(int(cx) + 17, w), min(int(cy) + 17, h)
        one = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.ellipse(one, (int((cx - x0) * 16), int((cy - y0) * 16)), (int(ax * 16), int(ay * 16)), ang, 0, 360,
                    255, -1, lineType=cv2.LINE_AA, shift=4)
        a = one.astype(np.float32)[..., None] / 255.0
        win = peb[y0:y1, x0:x1]
        peb[y0:y1, x0:x1] = win * (1 - a) + col.astype(np.float32) * a
        pa[y0:y1, x0:x1] = np.maximum(pa[y0:y1, x0:x1], a[..., 0])
    pa = cv2.GaussianBlur(pa, (0, 0), 0.8)
    peb = cv2.GaussianBlur(peb, (0, 0), 0.8)
    shade = 0.75 + 0.5 * fbm(rng, (w, h), cells=(12, 6))
    img = img * (1 - 0.85 * pa[..., None]) + 0.85 * peb * shade[..., None]
    return np.clip(img, 0, 255).astype(np.float32)


# ---------------------------------------------------------------------------------------- sprites

@dataclass
class Sprite:
    oid: int
    rgb: np.ndarray      # float32[h, w, 3] premultiplied by alpha
    alpha: np.ndarray    # float32[h, w] in [0, 1]
    anchor: tuple[float, float]   # sprite-pixel coordinates of the object's centre
    points: dict[str, tuple[float, float]]  # named keypoints, sprite-pixel coordinates


def coverage(draw, size: tuple[int, int]) -> np.ndarray:
    """Soft alpha float32[h, w]: draw(canvas_uint8, scale) fills the shape on a SUPERSAMPLE canvas."""
    w, h = size
    s = SUPERSAMPLE
    canvas = np.zeros((h * s, w * s), np.uint8)
    draw(canvas, s)
    return cv2.resize(canvas.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)


def to_super(pts: np.ndarray, s: int) -> np.ndarray:
    """Sprite-pixel coordinates (pixel centres at integers) -> integer supersampled coordinates."""
    return np.round((pts + 0.5) * s - 0.5).astype(np.int32)


def marker(rgb: np.ndarray, xy: tuple[float, float], r: float, ring, dot) -> None:
    """Paint a small bullseye (distinctive, for keypoints) into a float RGB texture."""
    c = (int(round(xy[0] * 16)), int(round(xy[1] * 16)))
    cv2.circle(rgb, c, int(r * 16), tuple(float(v) for v in ring), -1, cv2.LINE_AA, 4)
    cv2.circle(rgb, c, int(r * 0.45 * 16), tuple(float(v) for v in dot), -1, cv2.LINE_AA, 4)


def make_blob(rng: np.random.Generator) -> Sprite:
    w, h = 230, 190
    cx, cy = (w - 1) / 2, (h - 1) / 2
    rx, ry = 98.0, 74.0
    th = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    pert = np.zeros_like(th)
    for k, amp in ((2, 0.07), (3, 0.06), (4, 0.045), (5, 0.035), (7, 0.02)):
        pert += amp * np.sin(k * th + rng.uniform(0, 2 * np.pi))
    r = 1.0 + pert
    poly = np.stack([cx + rx * r * np.cos(th), cy + ry * r * np.sin(th)], -1)
    alpha = coverage(lambda c, s: cv2.fillPoly(c, [to_super(poly, s)], 255), (w, h))
    # Warm orange skin with dark irregular spots and fine mottling.
    n = fbm(rng, (w, h), cells=(40, 20, 10, 5))
    rgb = colour_ramp(n, [(0.0, (170, 60, 20)), (0.5, (235, 130, 40)), (1.0, (255, 210, 110))])
    spots = fbm(rng, (w, h), cells=(18, 9, 4))
    dark = np.clip((spots - 0.62) * 8, 0, 1)
    rgb = rgb * (1 - 0.75 * dark[..., None]) + np.array([70, 25, 15], np.float32) * 0.75 * dark[..., None]
    eye = (cx + 52.0, cy - 26.0)
    marker(rgb, eye, 11, (250, 245, 230), (20, 30, 90))
    rgb = np.clip(rgb, 0, 255) * alpha[..., None]
    return Sprite(BLOB, rgb, alpha, (cx, cy), {"blob_centre": (cx, cy), "blob_eye": eye})


def make_star(rng: np.random.Generator) -> Sprite:
    w = h = 250
    cx, cy = (w - 1) / 2, (h - 1) / 2
    R, r = 118.0, 56.0
    ang = -np.pi / 2 + np.arange(10) * np.pi / 5
    rad = np.where(np.arange(10) % 2 == 0, R, r)
    poly = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], -1)
    alpha = coverage(lambda c, s: cv2.fillPoly(c, [to_super(poly, s)], 255), (w, h))
    # Blue with white angular stripes (so rotation is visible inside the object) and noise.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = np.arctan2(yy - cy, xx - cx)
    dist = np.hypot(xx - cx, yy - cy)
    n = fbm(rng, (w, h), cells=(32, 16, 8, 4))
    rgb = colour_ramp(n, [(0.0, (20, 40, 140)), (0.55, (40, 110, 220)), (1.0, (120, 200, 255))])
    stripes = 0.5 + 0.5 * np.sin(theta * 15 + dist * 0.09)
    rgb = rgb * (0.65 + 0.35 * stripes[..., None]) + 70 * (stripes[..., None] > 0.85)
    ring = np.abs(dist - 30) < 4
    rgb[ring] = rgb[ring] * 0.4 + np.array([255, 230, 60], np.float32) * 0.6
    marker(rgb, (cx, cy), 8, (255, 255, 255), (200, 20, 40))
    tip = (cx + 0.8 * R * math.cos(ang[0]), cy + 0.8 * R * math.sin(ang[0]))
    marker(rgb, tip, 6, (255, 240, 120), (30, 20, 20))
    rgb = np.clip(rgb, 0, 255) * alpha[..., None]
    return Sprite(STAR, rgb, alpha, (cx, cy), {"star_centre": (cx, cy), "star_tip": tip})


def make_rect(rng: np.random.Generator) -> Sprite:
    w, h = 250, 170
    cx, cy = (w - 1) / 2, (h - 1) / 2
    hw, hh, rad = 116.0, 76.0, 26.0

    def draw(canvas, s):
        H, W = canvas.shape
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        px = (xx + 0.5) / s - 0.5 - cx
        py = (yy + 0.5) / s - 0.5 - cy
        qx = np.abs(px) - (hw - rad)
        qy = np.abs(py) - (hh - rad)
        sdf = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - rad
        canvas[sdf <= 0] = 255

    alpha = coverage(draw, (w, h))
    # Green / yellow checker with noise-varied colours, a border band, and a mark near one corner.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    n = fbm(rng, (w, h), cells=(30, 15, 7))
    chk = (((xx - cx) // 29 + (yy - cy) // 29) % 2).astype(np.float32)
    a = colour_ramp(n, [(0.0, (30, 110, 40)), (1.0, (110, 200, 80))])
    b = colour_ramp(n, [(0.0, (200, 170, 20)), (1.0, (255, 240, 120))])
    rgb = a * chk[..., None] + b * (1 - chk[..., None])
    edge = (np.abs(np.abs(xx - cx) - (hw - 12)) < 3.5) & (np.abs(yy - cy) < hh - 12) | \
           (np.abs(np.abs(yy - cy) - (hh - 12)) < 3.5) & (np.abs(xx - cx) < hw - 12)
    rgb[edge] = (90, 30, 110)
    mark = (cx - hw + 42, cy - hh + 40)
    marker(rgb, mark, 13, (240, 40, 160), (255, 255, 255))
    corner = (cx + hw - 22, cy + hh - 22)
    marker(rgb, corner, 7, (20, 20, 20), (240, 240, 240))
    rgb = np.clip(rgb, 0, 255) * alpha[..., None]
    return Sprite(RECT, rgb, alpha, (cx, cy),
                  {"rect_centre": (cx, cy), "rect_mark": mark, "rect_corner": corner})


# ---------------------------------------------------------------------------------------- motion

def smooth(t: float) -> float:
    return t * t * (3 - 2 * t)


def pose(oid: int, i: int) -> tuple[float, float, float, float, float]:
    """(x, y, rotation degrees (counter-clockwise on screen), scale_x, scale_y) of object oid at frame i."""
    t = i / (NUM_FRAMES - 1)
    if oid == BLOB:      # drifts right and up along an arc, grows slightly, turns slowly
        x = 215 + 225 * t
        y = 310 - 85 * math.sin(math.pi * 0.7 * t) + 12 * math.sin(2 * math.pi * 1.3 * t)
        rot = -20 * t + 4 * math.sin(2 * math.pi * t)
        s = 1.0 + 0.1 * t
        return x, y, rot, s, s
    if oid == STAR:      # sweeps from the upper right down and across in front of the blob, spinning
        x = 690 - 430 * (0.75 * t + 0.25 * smooth(t)) + 25 * math.sin(math.pi * t)
        y = 135 + 100 * math.sin(math.pi * 0.9 * t) + 50 * t
        rot = 45 * t
        s = 1.0 - 0.08 * math.sin(math.pi * t)
        return x, y, rot, s, s
    if oid == RECT:      # slow wobbling path at the lower right, turning over about its vertical axis
        x = 662 - 45 * t + 15 * math.sin(2 * math.pi * t)
        y = 378 - 25 * math.sin(math.pi * t) + 8 * t
        rot = 12 * math.sin(math.pi * 1.2 * t)
        sx = 1.0 - 0.56 * math.sin(math.pi * t) ** 2   # 1 -> 0.44 (edge-on-ish) -> 1
        return x, y, rot, sx, 1.0
    raise ValueError(oid)


def sprite_matrix(sprite: Sprite, i: int) -> np.ndarray:
    """2x3 affine map from sprite pixel coordinates to frame pixel coordinates at frame i."""
    x, y, rot, sx, sy = pose(sprite.oid, i)
    a = math.radians(rot)
    c, s = math.cos(a), math.sin(a)
    # Screen y points down: a counter-clockwise rotation on screen is [[c, s], [-s, c]].
    lin = np.array([[c, s], [-s, c]]) @ np.diag([sx, sy])
    ax, ay = sprite.anchor
    t = np.array([x, y]) - lin @ np.array([ax, ay])
    return np.hstack([lin, t[:, None]]).astype(np.float64)


def camera_matrix(i: int) -> np.ndarray:
    """2x3 affine map from frame pixel coordinates to background-texture coordinates at frame i."""
    t = i / (NUM_FRAMES - 1)
    zoom = 1.0 + 0.07 * smooth(t)
    cx = 440 + 120 * t
    cy = 300 + 25 * math.sin(math.pi * t)
    fx, fy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    return np.array([[1 / zoom, 0, cx - fx / zoom], [0, 1 / zoom, cy - fy / zoom]], np.float64)


# ---------------------------------------------------------------------------------------- rendering

@dataclass
class Scene:
    background: np.ndarray
    sprites: dict[int, Sprite]


def build_scene(seed: int = SEED) -> Scene:
    rng = np.random.default_rng(seed)
    bg = make_background(rng)
    sprites = {BLOB: make_blob(rng), STAR: make_star(rng), RECT: make_rect(rng)}
    return Scene(bg, sprites)


def keypoint_schema() -> KeypointSchema:
    return KeypointSchema(names=list(KEYPOINT_NAMES), skeleton=list(KEYPOINT_SKELETON))


def render_frame(scene: Scene, i: int, with_image: bool = True):
    """(rgb uint8[H, W, 3] or None, mask uint8[H, W], Keypoints) of frame i."""
    size = (WIDTH, HEIGHT)
    out = None
    if with_image:
        out = cv2.warpAffine(scene.background, camera_matrix(i), size,
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    for oid in DEPTH_ORDER:
        sp = scene.sprites[oid]
        m = sprite_matrix(sp, i)
        a = cv2.warpAffine(sp.alpha, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        mask[a >= 0.5] = oid
        if with_image:
            rgb = cv2.warpAffine(sp.rgb, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=(0, 0, 0))
            out = out * (1 - a[..., None]) + rgb
    xy = np.full((len(KEYPOINT_NAMES), 2), np.nan, np.float32)
    vis = np.zeros(len(KEYPOINT_NAMES), bool)
    for k, (name, oid) in enumerate(zip(KEYPOINT_NAMES, KEYPOINT_OWNER)):
        sp = scene.sprites[oid]
        m = sprite_matrix(sp, i)
        px, py = m @ np.array([*sp.points[name], 1.0])
        ix, iy = int(round(px)), int(round(py))
        if 0 <= ix < WIDTH and 0 <= iy < HEIGHT and mask[iy, ix] == oid and 0 <= px < WIDTH and 0 <= py < HEIGHT:
            xy[k] = (px, py)
            vis[k] = True
    img = None if out is None else np.clip(np.round(out), 0, 255).astype(np.uint8)
    return img, mask, Keypoints(xy, vis)


# ---------------------------------------------------------------------------------------- output

def write_video(path: Path, frames) -> None:
    import av

    def writer(tmp: str) -> None:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height = WIDTH, HEIGHT
            stream.pix_fmt = "yuv420p"
            stream.codec_context.gop_size = GOP
            stream.codec_context.max_b_frames = B_FRAMES
            # One thread and x264's plain C code paths: its AVX-512 kernels gave run-to-run differences
            # in the bitstream (same input, same settings), which would make every re-run a binary diff.
            stream.options = {"crf": str(CRF), "preset": "slow", "threads": "1",
                              "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes={B_FRAMES}"
                                             ":no-asm=1"}
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)

    from engine import atomic
    atomic.write_with(path, writer, suffix=".mp4")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "resources" / "demo")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    scene = build_scene()
    schema = keypoint_schema()
    for sub in ("demo_masks", "demo_keypoints"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir()

    def frames():
        for i in range(NUM_FRAMES):
            rgb, mask, kp = render_frame(scene, i)
            write_mask(out / "demo_masks" / f"{i:05d}.png", mask)
            write_keypoints(out / "demo_keypoints" / f"{i:05d}.json", schema, kp)
            if i == 0:
                write_mask(out / "demo_mask_00000.png", mask)
                write_keypoints(out / "demo_keypoints_00000.json", schema, kp)
            yield rgb

    write_video(out / "demo.mp4", frames())
    for p in out.rglob("*"):
        if p.is_file():
            p.chmod(0o644)  # atomic writes create private temp files; these are shipped resources
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {NUM_FRAMES} frames {WIDTH}x{HEIGHT} @ {FPS} fps to {out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
