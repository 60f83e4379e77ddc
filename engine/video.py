"""Frame-exact video access: containers through PyAV and folders of images.

`VideoSource.open(path)` gives random access (`frame(i)`) and a fast sequential iterator
(`frames(start, stop)`) with a bounded LRU cache of decoded RGB frames.

Frame numbering of containers never trusts the container's frame rate or `frame.index`: one demux
pass over the packets collects every presentation timestamp, and frame i is the i-th smallest pts.
That is exact for variable frame rate, B-frames (packets in decode order, negative dts) and a
non-zero start time.  Random access seeks to the last keyframe at or before the target and decodes
forward until a frame with exactly the target pts comes out; anything else is discarded.

Truncated or damaged files fail loudly: a header that promises more frames than the file holds is
refused at open, and a frame that cannot be decoded raises `VideoError` naming its index, so a
wrong (stale, grey or black) frame is never returned in its place.
"""
from __future__ import annotations

import bisect
import hashlib
import os
import re
import threading
from collections import OrderedDict, deque
from pathlib import Path

import numpy as np

from .errors import VideoError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
DEFAULT_IMAGE_FPS = 30.0
MAX_TAIL_CHECK = 600  # frames decoded at open to verify the end of the file


def natural_key(name: str):
    """Sort key putting frame2 before frame10."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name)]


def apply_rotation(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Turn a decoded frame upright.  `degrees` is the display-matrix rotation as PyAV reports it
    (counter-clockwise); np.rot90 also turns counter-clockwise, so phone videos (-90) turn clockwise
    exactly as the ffmpeg command line does."""
    k = int(round(degrees / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


class VideoSource:
    """Common part: length, timing, cache and locking.  Use `VideoSource.open`.

    Attributes: `path` (str, as given), `name`, `size` = (w, h) after rotation, `fps` (float),
    `timestamps` (float64 seconds of each frame from the first), `duration` (s), `is_image_folder`.
    """

    is_image_folder = False
    rotation = 0
    start_time = 0.0

    def __init__(self, path, cache_frames: int):
        self.path = os.fspath(path)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = max(0, int(cache_frames))
        # One lock for the shared decoder and the cache: the GUI thread and a worker may both ask.
        self._lock = threading.RLock()
        self._closed = False
        self._fingerprint = None

    @classmethod
    def open(cls, path, cache_frames: int = 64, fps: "float | None" = None) -> "VideoSource":
        p = Path(path)
        if not p.exists():
            raise VideoError(path, "does not exist")
        if p.is_dir():
            return ImageFolderSource(p, cache_frames, fps)
        return ContainerSource(p, cache_frames, fps)

    def __len__(self) -> int:
        return len(self.timestamps)

    def __repr__(self):
        w, h = self.size
        return f"<{type(self).__name__} {self.path!r} {len(self)} frames {w}x{h} @ {self.fps:.3f} fps>"

    def _check(self, i) -> int:
        if self._closed:
            raise VideoError(self.path, "is closed")
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range: {self.path} has {len(self)} frames")
        return i

    def frame(self, i: int) -> np.ndarray:
        """Frame i as a fresh, writable, C-contiguous uint8 array [H, W, 3] in RGB."""
        i = self._check(i)
        with self._lock:
            rgb = self._cache_get(i)
            if rgb is None:
                rgb = self._decode(i)
                if not self._cache_frames:
                    return rgb
                self._cache_put(i, rgb)
        return rgb.copy()

    def frames(self, start: int = 0, stop: "int | None" = None):
        """Yield (index, rgb) for start <= index < stop, in order, decoding sequentially."""
        start, stop = self._range(start, stop)
        for i in range(start, stop):
            yield i, self.frame(i)

    def _range(self, start, stop):
        if self._closed:
            raise VideoError(self.path, "is closed")
        stop = len(self) if stop is None else int(stop)
        start = int(start)
        if start < 0 or stop > len(self):
            raise IndexError(f"frames({start}, {stop}) out of range: {self.path} has {len(self)} frames")
        return start, stop

    def _cache_get(self, i):
        with self._lock:
            rgb = self._cache.get(i)
            if rgb is not None:
                self._cache.move_to_end(i)
            return rgb

    def _cache_put(self, i, rgb):
        if not self._cache_frames:
            return
        with self._lock:
            # Callers always get copies, so a cached frame can never be edited behind our back.
            rgb.flags.writeable = False
            self._cache[i] = rgb
            self._cache.move_to_end(i)
            while len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)

    def is_cached(self, i: int) -> bool:
        """Whether frame i would come from the cache (no decode): lets a UI warm only what is cheap."""
        with self._lock:
            return int(i) in self._cache

    def set_cache_frames(self, n: int) -> None:
        """Change the LRU cache's capacity (frames); a caller that knows the frame size can bound
        it in bytes (a 4K frame is 25 MB, a 480p one 1.2 MB)."""
        with self._lock:
            self._cache_frames = max(0, int(n))
            while len(self._cache) > self._cache_frames:
                self._cache.popitem(last=False)

    @property
    def cache_frames(self) -> int:
        return self._cache_frames

    def fingerprint(self) -> dict:
        """{"size": [w, h], "frames": n, "sha1": hash of the first 3 frames} (JSON-ready)."""
        if self._fingerprint is None:
            h = hashlib.sha1()
            for data in self._fingerprint_parts(min(3, len(self))):
                h.update(data)
            self._fingerprint = {"size": list(self.size), "frames": len(self), "sha1": h.hexdigest()}
        return dict(self._fingerprint)

    def close(self):
        with self._lock:
            self._closed = True
            self._cache.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ImageFolderSource(VideoSource):
    """A folder of numbered images (or a DAVIS sequence folder with JPEGImages/)."""

    is_image_folder = True

    def __init__(self, path: Path, cache_frames: int, fps):
        super().__init__(path, cache_frames)
        self.name = path.resolve().name
        self.folder = path / "JPEGImages" if (path / "JPEGImages").is_dir() else path  # DAVIS
        self.files = sorted((f for f in self.folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS
                             and not f.name.startswith(".") and f.is_file()), key=lambda f: natural_key(f.name))
        if not self.files:
            raise VideoError(path, "contains no images (" + ", ".join(sorted(IMAGE_EXTENSIONS)) + ")")
        self.size = self._header_size(self.files[0])
        for f in self.files[1:]:
            s = self._header_size(f)
            if s != self.size:
                raise VideoError(f, f"is {s[0]}x{s[1]} but {self.files[0].name} is "
                                    f"{self.size[0]}x{self.size[1]}; all frames must have one size")
        self.fps = float(fps) if fps else DEFAULT_IMAGE_FPS
        self.timestamps = np.arange(len(self.files), dtype=np.float64) / self.fps
        self.duration = len(self.files) / self.fps

    @staticmethod
    def _header_size(f: Path):
        from PIL import Image
        try:
            with Image.open(f) as im:
                w, h = im.size
                # EXIF orientations 5..8 are transposed: the upright frame has swapped sides.
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    w, h = h, w
                return w, h
        except (OSError, ValueError, SyntaxError) as e:
            raise VideoError(f, f"cannot be read as an image ({e})") from None

    def _decode(self, i):
        from PIL import Image, ImageOps
        f = self.files[i]
        try:
            with Image.open(f) as im:
                rgb = np.array(ImageOps.exif_transpose(im).convert("RGB"))
        except (OSError, ValueError, SyntaxError) as e:
            raise VideoError(f, f"frame {i} cannot be read ({e})") from None
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise VideoError(f, f"frame {i} changed size since the folder was opened")
        return rgb

    def _fingerprint_parts(self, n):
        # File bytes, not decoded pixels: JPEG decoders may differ by a grey level across builds.
        return [self.files[i].read_bytes() for i in range(n)]


class _Index:
    """Presentation order of a video stream: pts of frame i, keyframes, pts -> i."""

    def __init__(self, pts, keyframe_pts):
        self.pts = list(pts)
        self.pos = {p: i for i, p in enumerate(self.pts)}
        # Without a flagged keyframe the only safe start is the beginning of the file.
        self.keys = sorted(self.pos[p] for p in keyframe_pts if p in self.pos) or [0]


class _Decoder:
    """One open container positioned somewhere in the stream; knows the last frame it produced."""

    def __init__(self, path: str, stream_index: int, index: _Index):
        import av
        self._av, self.path, self.index, self._stream_index = av, path, index, stream_index
        self._open()

    def _open(self):
        self.container = self._av.open(self.path)
        self.stream = self.container.streams[self._stream_index]
        self.stream.codec_context.thread_type = "AUTO"
        self.pos = -1            # presentation index of the last frame produced
        self._gen = self._decoded()

    def close(self):
        self._gen = None
        self.container.close()

    def _decoded(self):
        """Yield (frame, trusted).  After a packet fails to decode, the decoder conceals the damage
        in every frame that references it and reports nothing, so frames from packets sent near
        the failure (frame threads report it late) up to the next keyframe are not trusted."""
        av = self._av
        ctx = self.stream.codec_context
        packets = self.container.demux(self.stream)
        recent, tainted, damaged = deque(maxlen=32), set(), False
        while True:
            try:
                packet = next(packets)
            except (StopIteration, av.FFmpegError):
                break
            if packet.size == 0:  # an empty packet would tell the decoder "end of stream"
                continue
            if packet.is_keyframe:
                recent.clear()
                damaged = False
            recent.append(_pts(packet))
            if damaged:
                tainted.add(_pts(packet))
            try:
                frames = ctx.decode(packet)
            except av.FFmpegError:
                damaged, frames = True, []
                tainted.update(recent)
            yield from ((f, not f.is_corrupt and _pts(f) not in tainted) for f in frames)
        try:
            yield from ((f, not f.is_corrupt and _pts(f) not in tainted) for f in ctx.decode(None))
        except av.FFmpegError:
            pass

    def _seek(self, k):
        """Position before keyframe k; k=None reopens the file, which cannot miss anything."""
        if k is None:
            self.close()
            self._open()
            return
        self.container.seek(self.index.pts[k], backward=True, any_frame=False, stream=self.stream)
        self.stream.codec_context.flush_buffers()
        self.pos = -1
        self._gen = self._decoded()

    def _advance(self, i):
        """Decode forward to frame i; None if the decoder skips past it or the stream ends."""
        if self._gen is None:
            return None
        for frame, trusted in self._gen:
            j = self.index.pos.get(_pts(frame))
            if j is None:
                continue  # leading frames outside the table
            self.pos = j
            if j == i and trusted:
                return frame
            if j >= i:
                return None
        self._gen = None
        return None

    def read(self, i):
        """The decoded av.VideoFrame of frame i, exactly."""
        all_keys = self.index.keys
        keys = all_keys[:bisect.bisect_right(all_keys, i)][::-1] or all_keys[:1]  # nearest first
        # Scrubbing forward: keep decoding unless a seek would skip at least one keyframe.
        go_on = self._gen is not None and self.pos < i and self.pos + 1 >= keys[0]
        # A seek may land late (odd indexes) or a decoder may need the previous GOP (open GOP):
        # then try the keyframe before; near the start, reopening the file is the last resort.
        attempts = (["continue"] if go_on else []) + keys[:2] + ([None] if len(keys) <= 2 else [])
        for k in attempts:
            try:
                if k != "continue":
                    self._seek(k)
                frame = self._advance(i)
            except self._av.FFmpegError:
                frame = None
                self._gen = None
            if frame is not None:
                return frame
        raise VideoError(self.path, f"frame {i} cannot be decoded (file truncated or damaged)")


class ContainerSource(VideoSource):
    """A video file read through PyAV.  `rotation` (0/90/180/270, counter-clockwise) is what
    was applied to the decoded frames; `start_time` is the first frame's pts in seconds."""

    def __init__(self, path: Path, cache_frames: int, fps):
        super().__init__(path, cache_frames)
        self.name = path.stem
        import av
        self._decoder = None
        try:
            try:
                container = av.open(self.path)
            except av.EOFError as e:
                raise VideoError(path, f"cannot be read as a video ({e.strerror}; empty or truncated)") from None
            with container:
                self._scan(container, av)
            self._decoder = _Decoder(self.path, self._stream_index, self._index)
            self._check_ends(av)
        except Exception as e:
            if self._decoder is not None:
                self._decoder.close()
            if isinstance(e, VideoError) or not isinstance(e, (av.FFmpegError, OSError, ValueError)):
                raise
            raise VideoError(path, f"cannot be read as a video ({getattr(e, 'strerror', None) or e})") from None
        if fps:
            self.fps = float(fps)

    def _scan(self, container, av):
        """One demux pass: pts and keyframe flag of every packet, plus evidence of truncation."""
        streams = [s for s in container.streams.video
                   if not int(s.disposition) & int(av.stream.Disposition.attached_pic)]  # not cover art
        if not streams:
            raise VideoError(self.path, "has no video stream")
        stream = streams[0]
        if stream.codec_context is None:
            raise VideoError(self.path, "uses a codec this FFmpeg build cannot decode (unsupported codec)")
        self._stream_index, tb = stream.index, stream.time_base
        pts, keys, self._durations, damaged, count = [], [], {}, None, 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except (StopIteration, av.EOFError):
                break
            except av.FFmpegError as e:
                damaged = f"reading stopped with an error ({e})"
                break
            p = _pts(packet)
            if packet.size == 0 and p is None:
                continue  # PyAV's end-of-stream marker
            count += 1
            if packet.is_corrupt:
                damaged = f"packet {count} is incomplete"
            if p is None:
                raise VideoError(self.path, "video packets carry no timestamps; "
                                            "remux it (ffmpeg -i IN -c copy OUT.mkv)")
            # Empty packets (AVI "drop frame") show nothing new; discarded ones lie outside the
            # edit list: decoded as references, never shown.
            if packet.size and not packet.is_discard:
                pts.append(p)
                self._durations[p] = packet.duration or 0
                if packet.is_keyframe:
                    keys.append(p)
        if not pts:
            raise VideoError(self.path, "contains no frames")
        if len(set(pts)) < len(pts):  # broken muxing: frames cannot be told apart by time
            raise VideoError(self.path, f"{len(pts) - len(set(pts))} of its {len(pts)} frames repeat another "
                                        "frame's timestamp; re-encode it or extract its frames to an image "
                                        "folder (ffmpeg -i IN DIR/%05d.png)")
        pts.sort()
        if damaged is None and stream.frames and count < stream.frames:
            damaged = f"the header lists {stream.frames} frames but only {count} are present"
        declared_end = _parse_hms(stream.metadata.get("DURATION", ""))  # Matroska/WebM track tag
        if damaged is None and declared_end is not None:
            step = float(np.median(np.diff(pts))) if len(pts) > 1 else 0.0
            end = float((pts[-1] + (self._durations[pts[-1]] or step)) * tb)
            if declared_end > end + float(2 * step * tb) + 1e-3:
                damaged = f"the header says it lasts {declared_end:.3f} s but its frames end at {end:.3f} s"
        if damaged:
            raise VideoError(self.path, f"file is truncated or damaged: {damaged}")
        self._index, self._time_base = _Index(pts, keys), tb
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0

    def _check_ends(self, av):
        """Decode the first frame (size, rotation) and the last GOP.  Leading or trailing packets
        that yield no frame are dropped: that renumbers no other frame, so none is ever wrong."""
        dec, ix = self._decoder, self._index
        first = next((f for f, _ in dec._gen if _pts(f) in ix.pos), None)
        if first is None:
            raise VideoError(self.path, "contains no frames that can be decoded")
        k = int(round((first.rotation or 0) / 90.0)) % 4
        self.rotation = 90 * k
        self.size = (first.height, first.width) if k % 2 else (first.width, first.height)
        key_pts = [ix.pts[j] for j in ix.keys]
        ix = dec.index = _Index(ix.pts[ix.pos[_pts(first)]:], key_pts)
        # A huge last GOP (screen recordings) would make opening slow; there a damaged tail
        # is only reported when its frames are read.
        decoded = set(ix.pts) if len(ix.pts) - ix.keys[-1] > MAX_TAIL_CHECK else set()
        try:
            if not decoded:
                dec._seek(ix.keys[-1])
                decoded = {_pts(f) for f, trusted in dec._gen if trusted}
        except av.FFmpegError:
            pass
        dec._gen, last = None, len(ix.pts)
        while last > ix.keys[-1] and ix.pts[last - 1] not in decoded:
            last -= 1
        if last == ix.keys[-1]:
            raise VideoError(self.path, f"frame {last} cannot be decoded (file truncated or damaged)")
        self._index = dec.index = _Index(ix.pts[:last], key_pts)
        tb, p0 = self._time_base, self._index.pts[0]
        self.timestamps = (np.asarray(self._index.pts, np.int64) - p0) * tb.numerator / tb.denominator
        self.start_time = float(p0 * tb)
        span = float(self.timestamps[-1])
        if not self.fps:
            self.fps = (len(self) - 1) / span if span > 0 else DEFAULT_IMAGE_FPS
        self.duration = span + (float(self._durations[self._index.pts[-1]] * tb) or 1.0 / self.fps)

    def _to_rgb(self, frame) -> np.ndarray:
        return np.ascontiguousarray(apply_rotation(frame.to_ndarray(format="rgb24"), self.rotation))

    def _decode(self, i):
        return self._to_rgb(self._decoder.read(i))

    def frames(self, start: int = 0, stop: "int | None" = None):
        """Sequential decoding on a private decoder, so a GUI calling frame() meanwhile neither
        blocks this iterator nor makes it seek; at most one seek per call."""
        start, stop = self._range(start, stop)
        dec = None
        try:
            for i in range(start, stop):
                if self._closed:
                    raise VideoError(self.path, "is closed")
                rgb = self._cache_get(i)
                if rgb is None or dec is not None:
                    # Once decoding has started every frame goes through the decoder, cached or not.
                    dec = dec or _Decoder(self.path, self._stream_index, self._index)
                    frame = dec.read(i)
                    if rgb is None:
                        rgb = self._to_rgb(frame)
                        self._cache_put(i, rgb)
                yield i, rgb.copy() if self._cache_frames else rgb
        finally:
            if dec is not None:
                dec.close()

    def _fingerprint_parts(self, n):
        # The decoder's own planes (bit-exact for H.264/HEVC/VP9) rather than RGB, whose
        # conversion may differ in the last bit between CPUs.
        dec = _Decoder(self.path, self._stream_index, self._index)
        try:
            for i in range(n):
                frame = dec.read(i)
                try:
                    arr = frame.to_ndarray()
                except (ValueError, TypeError, NotImplementedError):
                    arr = frame.to_ndarray(format="rgb24")
                yield frame.format.name.encode() + np.ascontiguousarray(arr).tobytes()
        finally:
            dec.close()

    def close(self):
        with self._lock:
            if not self._closed:
                self._decoder.close()
            super().close()


def _pts(x):
    """pts of a packet or frame, dts when a container left pts unset."""
    return x.pts if x.pts is not None else x.dts


def _parse_hms(text: str):
    """'HH:MM:SS.fraction' -> seconds; None when absent or unreadable."""
    m = re.fullmatch(r"\s*(\d+):(\d+):(\d+(?:\.\d*)?)\s*", text or "")
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None


class ArraySource(VideoSource):
    """Frames already in memory (a list or an array [N, H, W, 3] uint8 RGB): for scripts, tests and
    generated clips.  Same interface as the file-backed sources; `path` is a label (default
    "memory://<id>")."""

    def __init__(self, frames, fps: float = 25.0, path: "str | None" = None):
        arrays = [np.asarray(f) for f in frames]
        if not arrays:
            raise VideoError(path or "memory", "has no frames")
        shape = arrays[0].shape
        for i, f in enumerate(arrays):
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or f.shape != shape:
                raise VideoError(path or "memory", f"frame {i} is {f.dtype} {f.shape}; every frame must be "
                                                   f"uint8 [H, W, 3] of one size ({shape})")
        super().__init__(path or f"memory://{id(arrays)}", cache_frames=0)
        self._arrays = arrays
        self.name = os.path.basename(self.path)
        self.size = (shape[1], shape[0])
        self.fps = float(fps)
        self.timestamps = np.arange(len(arrays), dtype=np.float64) / self.fps
        self.duration = len(arrays) / self.fps

    def _decode(self, i: int) -> np.ndarray:
        return np.ascontiguousarray(self._arrays[i]).copy()

    def _fingerprint_parts(self, n: int):
        for i in range(n):
            yield np.ascontiguousarray(self._arrays[i]).tobytes()
