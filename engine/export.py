"""Exporters (and readers, for round trips) of an `AnnotationSession`'s labels.  No Qt.

Public API (all writes are atomic; failures raise `ExportError(path, reason)`, a subclass of
`engine.errors.AffinityError`; a set cancel token raises `engine.errors.Cancelled` and leaves
nothing behind)::

    FORMATS = ("masks", "coco", "csv", "video")
    export(session, fmt, path, **options) -> dict            # dispatch on fmt; returns the summary

    export_masks(session, folder, *, include_stale=True, progress=None, cancel=None) -> dict
        DAVIS palette PNGs `00000.png`... for every frame with a mask; the folder is replaced whole.
    read_masks(folder) -> dict[int, np.ndarray]               # frame -> uint8[H, W] ids

    coco_document(session, *, include_stale=True, all_frames=False) -> dict
    export_coco(session, path, *, include_stale=True, all_frames=False) -> dict
    read_coco(path) -> CocoData                                # .images, .categories, .masks, .keypoints, .doc
        masks: {frame: uint8[H, W] ids}, keypoints: {frame: Keypoints}

    export_keypoints_csv(session, path, *, include_stale=True) -> dict
    read_keypoints_csv(path) -> list[KeypointRow]              # one row per (frame, point)
    keypoints_from_rows(rows, names) -> dict[int, Keypoints]

    export_overlay_video(session, path, *, opacity=0.5, start=0, stop=None, include_stale=True,
                         codec=None, progress=None, cancel=None) -> dict
    probe_video(path) -> dict                                  # frames, width, height, fps, codec
    render_overlay(frame_rgb, mask=None, objects=None, keypoints=None, schema=None,
                   opacity=0.5) -> np.ndarray uint8[H, W, 3]   # also what the app can draw with

    rle_encode(mask) -> {"size": [h, w], "counts": str}       # COCO compressed RLE (pycocotools')
    rle_decode(rle) -> np.ndarray bool[H, W]                   # compressed (str/bytes) or list counts
    rle_area(rle) -> int;  mask_bbox(mask) -> [x, y, w, h]

`progress(done, total)` is called after every frame.  Summaries are JSON-ready dicts
({"format", "path", "frames", ...}) that the CLI prints and the GUI can show.

Which frames: those with a label in the layer (user keyframes and propagated results; stale results
too unless include_stale=False, since they are what the user sees on screen).  COCO lists one image
per exported frame by default, not per video frame: COCO readers treat an image without
annotations as "nothing here", which an unlabelled frame does not mean.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from . import atomic
from .errors import AffinityError, Cancelled, ExportError, LabelError
from .labels import PALETTE, Keypoints, KeypointSchema, read_mask, write_mask

FORMATS = ("masks", "coco", "csv", "video")
KEYPOINT_CATEGORY_ID = 256       # object ids are 1..255, so this never collides
CSV_FIELDS = ("frame", "point", "x", "y", "visible", "source", "confidence")
SOURCE_NAMES = {"user": "keyframe", "propagated": "propagated", "stale": "stale"}

Progress = Callable[[int, int], None]


# -- frame selection --------------------------------------------------------------------------------
def _frames(session, layer: str, include_stale: bool) -> list[int]:
    from .session import PROPAGATED, STALE, USER
    st = session.status_array(layer)
    ok = (st == USER) | (st == PROPAGATED)
    if include_stale:
        ok |= st == STALE
    return np.flatnonzero(ok).tolist()


def _source(session, i: int, layer: str) -> str:
    return SOURCE_NAMES.get(session.provenance(i, layer).kind, "empty")


def _check_cancel(cancel) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("export cancelled")


def _wrap_os(path, what: str):
    """Context: OSError (disk full, permission, missing folder) -> ExportError naming the file."""
    class _Ctx:
        def __enter__(self):
            return self

        def __exit__(self, tp, exc, tb):
            if tp is not None and issubclass(tp, OSError):
                raise ExportError(path, f"cannot write {what} ({exc.strerror or exc})") from None
            return False
    return _Ctx()


# -- COCO RLE ---------------------------------------------------------------------------------------
def _runs(mask: np.ndarray) -> list[int]:
    """Run lengths of a binary mask in column-major order, starting with a (maybe empty) 0-run."""
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    return [0] + runs if flat[0] else runs


def _compress(counts: list[int]) -> str:
    # pycocotools rleToString: each count (minus the count two before it, from the 4th on) as
    # 5-bit groups, low first, 0x20 = "more follows", offset by 48 into printable ASCII; the sign
    # is carried by bit 0x10 of the last group.
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5   # arithmetic shift, as C's on a signed long
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def _decompress(s: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError("compressed RLE string ends inside a count")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character {s[p]!r} in compressed RLE")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_encode(mask: np.ndarray) -> dict:
    """Binary mask bool/uint8[H, W] -> COCO compressed RLE {"size": [h, w], "counts": str}, equal to
    pycocotools.mask.encode(np.asfortranarray(mask)) with counts decoded as ASCII."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise LabelError(None, f"RLE needs a 2-D mask, got shape {m.shape}")
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": _compress(_runs(m))}


def _counts(rle: dict) -> tuple[int, int, list[int]]:
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"RLE needs 'size' [h, w] and 'counts' ({exc!r})") from None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = _decompress(counts)
    else:
        counts = [int(c) for c in counts]
    if any(c < 0 for c in counts):
        raise ValueError("RLE has a negative run length")
    if sum(counts) != h * w:
        raise ValueError(f"RLE runs cover {sum(counts)} pixels but size {h}x{w} has {h * w}")
    return h, w, counts


def rle_decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed string/bytes counts, or an uncompressed list) -> bool[H, W].
    Raises ValueError on a malformed RLE (read_coco turns it into ExportError naming the file)."""
    h, w, counts = _counts(rle)
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")


def rle_area(rle: dict) -> int:
    _, _, counts = _counts(rle)
    return int(sum(counts[1::2]))


def mask_bbox(mask: np.ndarray) -> list[float]:
    """[x, y, w, h] of the pixels set, in COCO's convention (pixel extents, as pycocotools toBbox)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]


# -- DAVIS palette PNGs -----------------------------------------------------------------------------
def export_masks(session, folder, *, include_stale: bool = True, progress: "Progress | None" = None,
                 cancel=None) -> dict:
    frames = _frames(session, "mask", include_stale)
    folder = Path(folder)
    if not frames:
        raise ExportError(folder, "nothing to export: no frame has a mask")
    if folder.exists() and not folder.is_dir():
        raise ExportError(folder, "exists and is not a folder")
    with _wrap_os(folder, "the mask folder"):
        with atomic.staged_dir(folder) as stage:
            for n, i in enumerate(frames, 1):
                _check_cancel(cancel)
                m = session.label(i)
                if m is not None:   # a worker may have cleared it meanwhile
                    write_mask(stage / f"{i:05d}.png", np.asarray(m))
                if progress:
                    progress(n, len(frames))
    return {"format": "masks", "path": str(folder), "frames": len(frames)}


_PNG_NAME = re.compile(r"^(\d+)\.png$")


def read_masks(folder) -> dict[int, np.ndarray]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(folder, "is not a folder of mask PNGs")
    out = {}
    for p in sorted(folder.iterdir()):
        m = _PNG_NAME.match(p.name)
        if m:
            out[int(m.group(1))] = read_mask(p)
    return out


# -- COCO JSON --------------------------------------------------------------------------------------
def _file_name(video, i: int) -> str:
    files = getattr(video, "files", None)   # image folders: the real frame file
    if files is not None and i < len(files):
        return Path(files[i]).name
    return f"{i:05d}.jpg"   # DAVIS JPEGImages convention for frames extracted from a container


def coco_document(session, *, include_stale: bool = True, all_frames: bool = False) -> dict:
    mask_frames = _frames(session, "mask", include_stale)
    kp_frames = _frames(session, "keypoints", include_stale) if session.schema is not None else []
    frames = range(len(session)) if all_frames else sorted(set(mask_frames) | set(kp_frames))
    w, h = session.size
    video = session.video
    images = [{"id": i + 1, "file_name": _file_name(video, i), "width": w, "height": h, "frame_index": i}
              for i in frames]
    objects = session.objects
    categories = [{"id": oid, "name": info["name"], "supercategory": "object",
                   "color": list(info["colour"])} for oid, info in objects.items()]
    schema = session.schema
    if schema is not None:
        categories.append({"id": KEYPOINT_CATEGORY_ID, "name": "keypoints", "supercategory": "keypoints",
                           "keypoints": list(schema.names),
                           "skeleton": [[int(a) + 1, int(b) + 1] for a, b in schema.skeleton]})  # COCO: 1-based
    anns = []
    for i in mask_frames:
        m = session.label(i)
        if m is None:
            continue
        src, conf = _source(session, i, "mask"), session.confidence(i, "mask")
        for oid in np.unique(m):
            if oid == 0:
                continue
            binary = m == oid
            if int(oid) not in objects:   # ids outside the table still get a category
                objects[int(oid)] = {"name": f"object {int(oid)}", "colour": tuple(int(c) for c in PALETTE[oid])}
                categories.append({"id": int(oid), "name": f"object {int(oid)}", "supercategory": "object",
                                   "color": [int(c) for c in PALETTE[oid]]})
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(oid),
                         "segmentation": rle_encode(binary), "area": int(binary.sum()),
                         "bbox": mask_bbox(binary), "iscrowd": 0,
                         "frame_index": i, "source": src, "confidence": conf})
    for i in kp_frames:
        kp = session.keypoints(i)
        if kp is None:
            continue
        flat, xs, ys = [], [], []
        for (x, y), v in zip(kp.xy, kp.visible):
            if v:
                flat += [_num(x), _num(y), 2]
                xs.append(float(x)); ys.append(float(y))
            else:
                flat += [0, 0, 0]
        bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)] if xs else [0.0, 0.0, 0.0, 0.0]
        anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": KEYPOINT_CATEGORY_ID,
                     "keypoints": flat, "num_keypoints": len(xs), "bbox": bbox, "area": bbox[2] * bbox[3],
                     "iscrowd": 0, "frame_index": i, "source": _source(session, i, "keypoints"),
                     "confidence": session.confidence(i, "keypoints")})
    return {"info": {"description": f"Affinity Annotator export of {Path(str(video.path)).name}",
                     "video": str(video.path), "num_frames": len(session), "fps": float(getattr(video, "fps", 0) or 0)},
            "images": images, "annotations": anns, "categories": sorted(categories, key=lambda c: c["id"])}


def _num(x) -> float:
    # Shortest decimal that reads back as the same float32, so a round trip is exact.
    return float(np.format_float_positional(np.float32(x), unique=True, trim="-"))


def export_coco(session, path, *, include_stale: bool = True, all_frames: bool = False) -> dict:
    path = Path(path)
    doc = coco_document(session, include_stale=include_stale, all_frames=all_frames)
    if not doc["annotations"]:
        raise ExportError(path, "nothing to export: no frame has a mask or keypoints")
    with _wrap_os(path, "the COCO file"):
        atomic.write_text(path, json.dumps(doc, separators=(",", ":")))
    return {"format": "coco", "path": str(path), "frames": len(doc["images"]),
            "annotations": len(doc["annotations"])}


@dataclass
class CocoData:
    doc: dict
    images: list
    categories: list
    masks: dict = field(default_factory=dict)       # frame -> uint8[H, W] ids (category id per pixel)
    keypoints: dict = field(default_factory=dict)   # frame -> Keypoints (the keypoint category)


def read_coco(path) -> CocoData:
    """Read a COCO file (ours or another tool's with RLE or polygon masks) back into per-frame
    id masks and keypoints.  Frames come from `frame_index` when present, else image id - 1."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        images = {im["id"]: im for im in doc["images"]}
        anns, cats = doc["annotations"], doc["categories"]
    except FileNotFoundError:
        raise ExportError(path, "does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(path, f"is not a COCO JSON file ({exc!r})") from None
    out = CocoData(doc=doc, images=list(images.values()), categories=cats)
    try:
        for a in anns:
            im = images[a["image_id"]]
            frame = int(im.get("frame_index", im["id"] - 1))
            h, w = int(im["height"]), int(im["width"])
            if "segmentation" in a and a["segmentation"]:
                seg = a["segmentation"]
                if isinstance(seg, dict):
                    binary = rle_decode(seg)
                else:   # polygons (other tools): rasterise
                    binary = np.zeros((h, w), np.uint8)
                    for poly in seg:
                        pts = np.round(np.asarray(poly, np.float64).reshape(-1, 2)).astype(np.int32)
                        cv2.fillPoly(binary, [pts], 1)
                    binary = binary.astype(bool)
                if binary.shape != (h, w):
                    raise ValueError(f"annotation {a.get('id')}: mask {binary.shape} but image {h}x{w}")
                m = out.masks.setdefault(frame, np.zeros((h, w), np.uint8))
                m[binary] = int(a["category_id"])
            if "keypoints" in a:
                trip = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
                out.keypoints[frame] = Keypoints(trip[:, :2].astype(np.float32), trip[:, 2] > 0)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(path, f"malformed COCO annotation ({exc})") from None
    return out


# -- keypoint CSV -----------------------------------------------------------------------------------
@dataclass
class KeypointRow:
    frame: int
    point: str
    x: "float | None"
    y: "float | None"
    visible: bool
    source: str
    confidence: "float | None"


def export_keypoints_csv(session, path, *, include_stale: bool = True) -> dict:
    path = Path(path)
    if session.schema is None:
        raise ExportError(path, "nothing to export: the session has no keypoint schema")
    frames = _frames(session, "keypoints", include_stale)
    if not frames:
        raise ExportError(path, "nothing to export: no frame has keypoints")
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(CSV_FIELDS)
    rows = 0
    for i in frames:
        kp = session.keypoints(i)
        if kp is None:
            continue
        src, conf = _source(session, i, "keypoints"), session.confidence(i, "keypoints")
        for name, (x, y), v in zip(session.schema.names, kp.xy, kp.visible):
            xs, ys = (_fmt(x), _fmt(y)) if v else ("", "")
            wr.writerow([i, name, xs, ys, int(bool(v)), src, "" if conf is None else f"{conf:.6g}"])
            rows += 1
    with _wrap_os(path, "the keypoint CSV"):
        atomic.write_text(path, buf.getvalue())
    return {"format": "csv", "path": str(path), "frames": len(frames), "rows": rows}


def _fmt(x) -> str:
    return np.format_float_positional(np.float32(x), unique=True, trim="-")


def read_keypoints_csv(path) -> list[KeypointRow]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportError(path, "does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(path, f"cannot be read ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or set(CSV_FIELDS) - set(reader.fieldnames):
        raise ExportError(path, f"header must hold {', '.join(CSV_FIELDS)}; got {reader.fieldnames}")
    out = []
    for n, r in enumerate(reader, 2):
        try:
            vis = r["visible"].strip() in ("1", "true", "True")
            out.append(KeypointRow(int(r["frame"]), r["point"], float(r["x"]) if r["x"] else None,
                                   float(r["y"]) if r["y"] else None, vis, r["source"],
                                   float(r["confidence"]) if r["confidence"] else None))
        except (TypeError, ValueError) as exc:
            raise ExportError(path, f"line {n}: {exc}") from None
    return out


def keypoints_from_rows(rows: Iterable[KeypointRow], names: list[str]) -> dict[int, Keypoints]:
    """Group CSV rows back into per-frame Keypoints in schema order (missing points are absent)."""
    pos = {n: k for k, n in enumerate(names)}
    xy: dict[int, np.ndarray] = {}
    vis: dict[int, np.ndarray] = {}
    for r in rows:
        if r.point not in pos:
            raise ExportError(None, f"frame {r.frame}: point {r.point!r} is not in the schema {names}")
        if r.frame not in xy:
            xy[r.frame] = np.full((len(names), 2), np.nan, np.float32)
            vis[r.frame] = np.zeros(len(names), bool)
        if r.visible and r.x is not None and r.y is not None:
            xy[r.frame][pos[r.point]] = (r.x, r.y)
            vis[r.frame][pos[r.point]] = True
    return {f: Keypoints(xy[f], vis[f]) for f in sorted(xy)}


# -- overlay rendering and video --------------------------------------------------------------------
def render_overlay(frame_rgb: np.ndarray, mask: "np.ndarray | None" = None, objects: "dict | None" = None,
                   keypoints: "Keypoints | None" = None, schema: "KeypointSchema | None" = None,
                   opacity: float = 0.5) -> np.ndarray:
    """Frame with object colours blended at `opacity`, object outlines, and keypoints + skeleton."""
    out = np.array(frame_rgb, np.uint8, copy=True)
    if mask is not None and mask.any():
        lut = PALETTE.astype(np.float32).copy()
        for oid, info in (objects or {}).items():
            lut[int(oid)] = info["colour"]
        colour = lut[mask]
        on = mask > 0
        blend = out.astype(np.float32)
        blend[on] = (1 - opacity) * blend[on] + opacity * colour[on]
        out = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
        # Outlines keep object boundaries readable at low opacity.
        edge = (cv2.dilate(mask, np.ones((3, 3), np.uint8)) != cv2.erode(mask, np.ones((3, 3), np.uint8))) & on
        out[edge] = lut[mask[edge]].astype(np.uint8)
    if keypoints is not None:
        n = len(keypoints.xy)
        colours = list(schema.colours) if schema is not None else [tuple(int(c) for c in PALETTE[1 + k % 255]) for k in range(n)]
        r = max(2, int(round(min(out.shape[:2]) / 120)))
        # Absent points have no meaningful (often NaN) position: never convert those.
        pts = [(int(round(float(x))), int(round(float(y)))) if v else (0, 0)
               for (x, y), v in zip(keypoints.xy.tolist(), keypoints.visible)]
        for a, b in (schema.skeleton if schema is not None else []):
            if keypoints.visible[a] and keypoints.visible[b]:
                cv2.line(out, pts[a], pts[b], (255, 255, 255), max(1, r // 2), cv2.LINE_AA)
        for k in np.flatnonzero(keypoints.visible):
            c = tuple(int(v) for v in colours[k % len(colours)])
            cv2.circle(out, pts[k], r + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(out, pts[k], r, c, -1, cv2.LINE_AA)
    return out


def _pick_codec(codec: "str | None") -> str:
    import av
    for name in ([codec] if codec else ["libx264", "h264", "mpeg4"]):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:   # PyAV raises its own error types per missing codec
            continue
    raise ExportError(None, f"no usable video encoder ({codec or 'libx264, h264, mpeg4'}) in this PyAV build")


def export_overlay_video(session, path, *, opacity: float = 0.5, start: int = 0, stop: "int | None" = None,
                         include_stale: bool = True, codec: "str | None" = None,
                         progress: "Progress | None" = None, cancel=None) -> dict:
    """MP4 of frames start..stop-1 with the labels drawn, at the video's frame rate.  Odd sizes are
    padded by one edge pixel (yuv420p needs even sides).  Written to a temp file, then renamed."""
    import av
    path = Path(path)
    video = session.video
    n = len(session)
    stop = n if stop is None else min(int(stop), n)
    if not 0 <= start < stop:
        raise ExportError(path, f"empty frame range {start}..{stop} (the video has {n} frames)")
    name = _pick_codec(codec)
    w, h = session.size
    ew, eh = w + w % 2, h + h % 2
    fps = Fraction(float(getattr(video, "fps", 0) or 25)).limit_denominator(1001)
    show_mask = set(_frames(session, "mask", include_stale))
    show_kp = set(_frames(session, "keypoints", include_stale)) if session.schema is not None else set()
    objects, schema = session.objects, session.schema
    total = stop - start

    def write(tmp: str) -> None:
        with av.open(tmp, "w", format="mp4") as out:
            stream = out.add_stream(name, rate=fps)
            stream.width, stream.height, stream.pix_fmt = ew, eh, "yuv420p"
            if name in ("libx264", "h264"):
                stream.options = {"crf": "20", "preset": "veryfast"}
            else:
                stream.bit_rate = max(2_000_000, ew * eh * 8)
            for done, (i, rgb) in enumerate(video.frames(start, stop), 1):
                _check_cancel(cancel)
                img = render_overlay(rgb, session.label(i) if i in show_mask else None, objects,
                                     session.keypoints(i) if i in show_kp else None, schema, opacity)
                if (ew, eh) != (w, h):
                    img = cv2.copyMakeBorder(img, 0, eh - h, 0, ew - w, cv2.BORDER_REPLICATE)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
                if progress:
                    progress(done, total)
            for packet in stream.encode():
                out.mux(packet)

    try:
        atomic.write_with(path, write, suffix=".mp4")
    except (Cancelled, AffinityError):
        raise
    except OSError as exc:
        raise ExportError(path, f"cannot write the video ({exc.strerror or exc})") from None
    except Exception as exc:   # encoder failures surface as PyAV/FFmpeg error types
        raise ExportError(path, f"video encoding failed ({exc})") from None
    return {"format": "video", "path": str(path), "frames": total, "codec": name,
            "width": ew, "height": eh, "fps": float(fps)}


def probe_video(path) -> dict:
    """Frame count, size, rate and codec of a written video (counts decoded frames, exactly)."""
    import av
    path = Path(path)
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            frames = sum(1 for _ in c.decode(s))
            return {"frames": frames, "width": s.codec_context.width, "height": s.codec_context.height,
                    "fps": float(s.average_rate or s.guessed_rate or 0), "codec": s.codec_context.name}
    except FileNotFoundError:
        raise ExportError(path, "does not exist") from None
    except Exception as exc:
        raise ExportError(path, f"is not a readable video ({exc})") from None


# -- dispatch ---------------------------------------------------------------------------------------
def export(session, fmt: str, path, **options) -> dict:
    """Export in one of FORMATS ("masks" -> folder, "coco" -> .json, "csv" -> .csv, "video" -> .mp4)."""
    fns = {"masks": export_masks, "coco": export_coco, "csv": export_keypoints_csv,
           "video": export_overlay_video}
    if fmt not in fns:
        from .errors import ConfigError
        raise ConfigError(None, f"export format must be one of {FORMATS}, got {fmt!r}")
    return fns[fmt](session, path, **options)


__all__ = ["FORMATS", "KEYPOINT_CATEGORY_ID", "CSV_FIELDS", "ExportError", "CocoData", "KeypointRow",
           "export", "export_masks", "read_masks", "coco_document", "export_coco", "read_coco",
           "export_keypoints_csv", "read_keypoints_csv", "keypoints_from_rows", "export_overlay_video",
           "probe_video", "render_overlay", "rle_encode", "rle_decode", "rle_area", "mask_bbox"]
