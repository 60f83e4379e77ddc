"""AnnotationSession: user keyframes, propagated results, their provenance, and what to re-run.

The GUI is a client of exactly this class (no Qt here).  A session has two independent *layers*,
"mask" (uint8[H, W] object ids per frame) and "keypoints" (`labels.Keypoints` per frame); every
layer has its own keyframes, results and provenance.  Methods that are about one layer take
`layer=None`, meaning `session.default_layer` ("keypoints" for a session made with a schema and no
objects, else "mask"); `set_keyframe` and `apply_result` pick the layer from the label itself.

Provenance of a frame: `user` (a keyframe), `propagated` (source = its keyframe), `stale` (it was
propagated from a keyframe that has since changed or gone, or a new keyframe now lies between it and
its source; it keeps its label so the user still sees it) or `empty`.  A propagated or stale frame
also records the model that produced it (a tag the caller gives, e.g. the checkpoint's name), so
frames from a model that has since been replaced (adapted to the video) can be re-run on request.

The propagator is causal: the result at frame i depends only on its keyframe's label and the frames
from the keyframe to i.  So a result stays valid while that keyframe is unchanged and no other
keyframe lies between them; moving a segment's far end does not invalidate what was computed.

Where two keyframes a < b face each other, frame i is owned by the nearer one: a result from a
farther keyframe never replaces a valid result from a nearer one (ties go to the latest run), so
running both directions gives the bidirectional split whatever the order, and `plan_all` runs each
keyframe only over the half it owns.

Thread safety: one re-entrant lock guards all state, so a worker thread may apply results while the
GUI thread reads or edits.  Subscribers are called after the lock is released, on the thread that
made the change (a Qt client forwards them to its own thread with a queued signal).
"""
from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from .errors import ConfigError, LabelError
from .labels import PALETTE, Keypoints, KeypointSchema

EMPTY, USER, PROPAGATED, STALE = 0, 1, 2, 3
KINDS = ("empty", "user", "propagated", "stale")   # index = code in status_array()
LAYERS = ("mask", "keypoints")
DIRECTIONS = ("forward", "backward")


@dataclass(frozen=True)
class Provenance:
    kind: str                  # one of KINDS
    source: "int | None" = None  # the keyframe a propagated or stale frame came from
    model: "str | None" = None   # the model tag a propagated or stale frame came from, if given

    @property
    def code(self) -> int:
        return KINDS.index(self.kind)


@dataclass(frozen=True)
class Segment:
    """A run from `keyframe` over `frames`: start..stop-1 (forward) or start down to stop+1
    (backward); `stop` is exclusive, as the Propagator's `stop`.  `version` is the keyframe's label
    version when planned: results of a run whose keyframe has changed since are dropped."""
    keyframe: int
    start: int
    stop: int
    direction: str
    version: int
    layer: str = "mask"

    @property
    def frames(self) -> range:
        """Frame indices in propagation order (the keyframe itself excluded)."""
        return range(self.start, self.stop) if self.direction == "forward" else range(self.start, self.stop, -1)

    def __len__(self) -> int:
        return len(self.frames)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _frames_arg(frames: "set[int]") -> "range | list[int]":
    s = sorted(frames)
    if not s:
        return range(0)
    return range(s[0], s[-1] + 1) if s[-1] - s[0] + 1 == len(s) else s


class _Layer:
    """State of one layer.  Stored labels are never modified in place (edits store new arrays), so
    a propagation run or a save may hold references to them without copying."""

    def __init__(self, n: int):
        self.status = np.zeros(n, np.int8)
        self.source = np.full(n, -1, np.int64)
        self.conf = np.full(n, np.nan, np.float32)
        self.model = np.full(n, -1, np.int16)  # index into the session's model tags, -1 = none
        self.labels: dict = {}
        self.rev: dict[int, int] = {}        # frame -> change counter of its label (cheap re-saves)
        self.keys: list[int] = []            # sorted keyframes
        self.version: dict[int, int] = {}    # keyframe -> label version (never reused)
        self.soft: dict[int, tuple] = {}     # frame -> ((keyframe, step), float16[C, h, w])
        self.soft_lru: dict[tuple, OrderedDict] = {}

    def between(self, a: int, b: int) -> bool:
        """Whether a keyframe lies strictly between frames a and b."""
        lo, hi = min(a, b), max(a, b)
        p = bisect.bisect_right(self.keys, lo)
        return p < len(self.keys) and self.keys[p] < hi

    def drop_soft(self, i: int) -> None:
        item = self.soft.pop(i, None)
        if item is not None:
            self.soft_lru[item[0]].pop(i, None)

    def keep_soft(self, i: int, run: tuple, soft, limit: int) -> None:
        # Bounded per run: a long video must not keep O(video) soft maps; the latest ones are what
        # a resumed propagation needs.
        self.drop_soft(i)
        if soft is None or limit <= 0:
            return
        lru = self.soft_lru.setdefault(run, OrderedDict())
        lru[i] = None
        self.soft[i] = (run, np.asarray(soft, np.float16))
        while len(lru) > limit:
            old, _ = lru.popitem(last=False)
            self.soft.pop(old, None)

    def make_stale(self, which: np.ndarray) -> list[int]:
        idx = np.flatnonzero(which)
        self.status[idx] = STALE
        for i in idx:
            self.drop_soft(int(i))
        return idx.tolist()


class AnnotationSession:
    def __init__(self, video, schema: "KeypointSchema | None" = None,
                 objects: "Mapping[int, dict] | None" = None, *, settings: "Mapping | None" = None,
                 soft_frames: int = 40):
        self.video = video
        self.schema = schema
        self.soft_frames = int(soft_frames)
        self.default_layer = "keypoints" if schema is not None and not objects else "mask"
        self.created = now_iso()
        self.modified: "str | None" = None
        self._n = len(video)
        self._size = (int(video.size[0]), int(video.size[1]))
        self._lock = threading.RLock()
        self._subscribers: list[Callable] = []
        self._pending: dict[str, set] = {}
        self._depth = 0
        self._clock = 0            # bumped by every change; dirty = changed since the last save
        self._saved_clock = 0
        self._written: dict[str, dict[int, int]] = {}   # folder -> {frame: rev written there}
        self._fingerprint: "dict | None" = None
        self._layers = {name: _Layer(self._n) for name in LAYERS}
        self._model_tags: list[str] = []   # append-only: indices stored per frame stay valid
        self._objects: dict[int, dict] = {}
        for oid, info in (objects or {}).items():
            oid = self._check_id(oid)
            self._objects[oid] = {"name": str(info.get("name") or f"object {oid}"),
                                  "colour": self._check_colour(info.get("colour", PALETTE[oid]), oid)}
        self._settings: dict = {}
        self.update_settings(**dict(settings or {}))
        self._saved_clock = self._clock

    # -- basics ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def dirty(self) -> bool:
        """Unsaved changes since the last `save` (autosaves do not count)."""
        return self._clock != self._saved_clock

    @property
    def settings(self) -> Mapping:
        """Read-only view; change it with `update_settings` so it is saved and notified."""
        return MappingProxyType(self._settings)

    def update_settings(self, **values) -> None:
        for key, value in values.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise ConfigError(None, f"setting {key!r} must be JSON-serialisable, got {type(value).__name__}") from None
        with self._edit():
            self._settings.update(values)
            self._emit("settings", ())

    # -- notification ---------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[str, "range | list[int]"], None]) -> None:
        """callback(kind, frames) after every change; kind is "label", "provenance", "keyframes",
        "objects" or "settings"; frames are the frames whose display changed (range(0) for none)."""
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    @contextmanager
    def _edit(self):
        events = None
        with self._lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    events, self._pending = self._pending, {}
                    subscribers = list(self._subscribers)
        for kind, frames in (events or {}).items():
            for cb in subscribers:
                cb(kind, _frames_arg(frames))

    def _emit(self, kind: str, frames: Iterable[int]) -> None:
        self._clock += 1
        self._pending.setdefault(kind, set()).update(int(i) for i in frames)

    # -- objects --------------------------------------------------------------------------------
    @property
    def objects(self) -> dict[int, dict]:
        """Copy of the objects table: id -> {"name": str, "colour": (r, g, b)}."""
        with self._lock:
            return {oid: dict(info) for oid, info in sorted(self._objects.items())}

    def add_object(self, name: "str | None" = None, colour=None) -> int:
        with self._edit():
            free = [i for i in range(1, 256) if i not in self._objects]
            if not free:
                raise LabelError(None, "all 255 object ids are in use")
            oid = free[0]
            self._objects[oid] = {"name": str(name or f"object {oid}"),
                                  "colour": self._check_colour(PALETTE[oid] if colour is None else colour, oid)}
            self._emit("objects", ())
            return oid

    def rename_object(self, oid: int, name: str) -> None:
        with self._edit():
            self._object(oid)["name"] = str(name)
            self._emit("objects", ())

    def set_object_colour(self, oid: int, colour) -> None:
        with self._edit():
            self._object(oid)["colour"] = self._check_colour(colour, oid)
            self._emit("objects", range(self._n))   # every overlay may show it

    def delete_object(self, oid: int) -> None:
        """Remove the id from the table, every keyframe and every result (pixels become background);
        frames propagated from a keyframe that held it become stale."""
        with self._edit():
            self._object(oid)
            del self._objects[oid]
            self._emit("objects", ())
            L = self._layers["mask"]
            changed_keys = []
            for i, m in list(L.labels.items()):
                hit = m == oid
                if hit.any():
                    new = m.copy()
                    new[hit] = 0
                    L.labels[i] = new
                    self._emit("label", [i])
                    L.rev[i] = self._clock
                    if L.status[i] == USER:
                        L.version[i] = self._clock
                        changed_keys.append(i)
            stale = L.make_stale((L.status == PROPAGATED) & np.isin(L.source, changed_keys))
            self._emit("provenance", stale)

    def _object(self, oid: int) -> dict:
        if oid not in self._objects:
            raise LabelError(f"object {oid}", "does not exist")
        return self._objects[oid]

    @staticmethod
    def _check_id(oid) -> int:
        oid = int(oid)
        if not 1 <= oid <= 255:
            raise LabelError(f"object {oid}", "ids must be 1..255 (0 is the background)")
        return oid

    @staticmethod
    def _check_colour(colour, oid) -> tuple[int, int, int]:
        c = tuple(int(v) for v in np.asarray(colour).ravel())
        if len(c) != 3 or not all(0 <= v <= 255 for v in c):
            raise LabelError(f"object {oid}", f"colour must be (r, g, b) in 0..255, got {colour!r}")
        return c

    # -- keyframes ------------------------------------------------------------------------------
    def set_keyframe(self, i: int, label: "np.ndarray | Keypoints") -> None:
        """Make frame i a user keyframe (mask uint8[H, W] or Keypoints).  Frames that depended on
        its old label, and frames whose path from their keyframe now crosses i, become stale."""
        i = self._index(i)
        name, value = self._validate(i, label, copy=True)
        with self._edit():
            L = self._layers[name]
            if name == "mask":
                self._adopt_ids(value)
            if i in L.version:
                stale = L.make_stale((L.status == PROPAGATED) & (L.source == i))
            else:
                bisect.insort(L.keys, i)
                idx, src = np.arange(self._n), L.source
                crosses = ((src < i) & (idx > i)) | ((src > i) & (idx < i))
                stale = L.make_stale((L.status == PROPAGATED) & crosses)
                self._emit("keyframes", [i])
            self._store(L, i, USER, -1, 1.0, value)
            L.version[i] = self._clock
            self._emit("provenance", stale)

    def remove_keyframe(self, i: int, layer: "str | None" = None) -> bool:
        """Frame i becomes empty and frames propagated from it stale.  False if it was no keyframe."""
        i = self._index(i)
        with self._edit():
            L = self._layer(layer)
            if i not in L.version:
                return False
            L.keys.remove(i)
            del L.version[i]
            stale = L.make_stale((L.status == PROPAGATED) & (L.source == i))
            self._store(L, i, EMPTY, -1, np.nan, None)
            self._emit("keyframes", [i])
            self._emit("provenance", stale)
            return True

    def keyframes(self, layer: "str | None" = None) -> list[int]:
        with self._lock:
            return list(self._layer(layer).keys)

    def is_keyframe(self, i: int, layer: "str | None" = None) -> bool:
        return i in self._layer(layer).version

    def _adopt_ids(self, mask: np.ndarray) -> None:
        new = [int(v) for v in np.unique(mask) if v and int(v) not in self._objects]
        for oid in new:
            self._objects[oid] = {"name": f"object {oid}", "colour": tuple(int(c) for c in PALETTE[oid])}
        if new:
            self._emit("objects", ())

    # -- queries --------------------------------------------------------------------------------
    def label(self, i: int) -> "np.ndarray | None":
        """The mask of frame i (read-only view; copy it to edit), or None."""
        m = self._layers["mask"].labels.get(self._index(i))
        if m is None:
            return None
        v = m.view()
        v.flags.writeable = False
        return v

    def keypoints(self, i: int) -> "Keypoints | None":
        kp = self._layers["keypoints"].labels.get(self._index(i))
        return None if kp is None else Keypoints(kp.xy.copy(), kp.visible.copy())

    def provenance(self, i: int, layer: "str | None" = None) -> Provenance:
        i = self._index(i)
        with self._lock:
            L = self._layer(layer)
            code, src, m = int(L.status[i]), int(L.source[i]), int(L.model[i])
        derived = code in (PROPAGATED, STALE)
        return Provenance(KINDS[code], src if derived else None,
                          self._model_tags[m] if derived and m >= 0 else None)

    @property
    def model_tags(self) -> tuple:
        """Every model tag results were stored with, in order of first use (`model_array` indexes it)."""
        with self._lock:
            return tuple(self._model_tags)

    def model_array(self, layer: "str | None" = None) -> np.ndarray:
        """int16[len]: index into `model_tags` of the model behind each propagated/stale frame, else -1."""
        with self._lock:
            L = self._layer(layer)
            return np.where(np.isin(L.status, (PROPAGATED, STALE)), L.model, -1).astype(np.int16)

    def _tag_index(self, tag: "str | None") -> int:
        if tag is None:
            return -1
        tag = str(tag)
        if tag not in self._model_tags:
            self._model_tags.append(tag)
        return self._model_tags.index(tag)

    def confidence(self, i: int, layer: "str | None" = None) -> "float | None":
        c = float(self._layer(layer).conf[self._index(i)])
        return None if np.isnan(c) else c

    def soft(self, i: int, layer: "str | None" = None) -> "np.ndarray | None":
        """Soft labels float16[C, h, w] of a recent valid result (kept for the last `soft_frames`
        frames of each run), else None."""
        item = self._layer(layer).soft.get(self._index(i))
        return None if item is None else item[1]

    def status_array(self, layer: "str | None" = None) -> np.ndarray:
        """int8[len] provenance codes (index into KINDS) for a timeline strip."""
        with self._lock:
            return self._layer(layer).status.copy()

    def confidence_array(self, layer: "str | None" = None) -> np.ndarray:
        """float32[len] confidences, NaN where empty."""
        with self._lock:
            return self._layer(layer).conf.copy()

    # -- planning -------------------------------------------------------------------------------
    def plan(self, frame: int, direction: str = "forward", layer: "str | None" = None) -> list[Segment]:
        """Segment(s) to (re)propagate: forward from the keyframe at or before `frame` up to the next
        keyframe or the end; backward from the keyframe at or after it down to the previous one or
        frame 0; "both" = both of these.  Segments without frames are left out."""
        frame = self._index(frame)
        if direction == "both":
            return self.plan(frame, "forward", layer) + self.plan(frame, "backward", layer)
        if direction not in DIRECTIONS:
            raise ConfigError(None, f"direction must be 'forward', 'backward' or 'both', got {direction!r}")
        name = layer or self.default_layer
        with self._lock:
            keys = self._layer(name).keys
            if direction == "forward":
                p = bisect.bisect_right(keys, frame) - 1
                if p < 0:
                    return []
                seg = self._segment(name, keys[p], "forward", keys[p + 1] if p + 1 < len(keys) else self._n)
            else:
                p = bisect.bisect_left(keys, frame)
                if p == len(keys):
                    return []
                seg = self._segment(name, keys[p], "backward", keys[p - 1] if p > 0 else -1)
        return [seg] if len(seg) else []

    def plan_all(self, layer: "str | None" = None) -> list[Segment]:
        """Every run needed to fill stale and empty frames, in frame order: backward from the first
        keyframe to frame 0, forward from the last one to the end, and between two keyframes each
        one over the half nearer to it (the middle frame of an odd gap in both)."""
        name = layer or self.default_layer
        with self._lock:
            L = self._layer(name)
            needs = (L.status == EMPTY) | (L.status == STALE)
            return [s for s in self._owned_segments(name) if needs[list(s.frames)].any()]

    def _owned_segments(self, name: str) -> list[Segment]:
        """Each keyframe's runs over the frames it owns (see `plan_all`), without frames skipped."""
        keys, out = self._layers[name].keys, []
        for p, k in enumerate(keys):
            stop = -1 if p == 0 else -(-(keys[p - 1] + k) // 2) - 1
            out.append(self._segment(name, k, "backward", stop))
            stop = self._n if p + 1 == len(keys) else (k + keys[p + 1]) // 2 + 1
            out.append(self._segment(name, k, "forward", stop))
        return [s for s in out if len(s)]

    def plan_stale(self, layer: "str | None" = None) -> list[Segment]:
        """The runs that refresh stale frames only (what a correction needs): the segments of
        `plan_all` that hold stale frames, each cut short after its last stale frame, so empty
        frames stay empty and frames owned by a farther keyframe are not recomputed."""
        name = layer or self.default_layer
        with self._lock:
            return self._cut_after_last(self.plan_all(name), self._layer(name).status == STALE)

    def plan_outdated(self, model: str, layer: "str | None" = None) -> list[Segment]:
        """The runs that redo propagated or stale frames made by another model than `model` (e.g.
        before the model was adapted to this video): the segments of `plan_all` holding such frames,
        each cut short after its last one."""
        name = layer or self.default_layer
        with self._lock:
            L = self._layer(name)
            mine = self._model_tags.index(model) if model in self._model_tags else -2
            old = np.isin(L.status, (PROPAGATED, STALE)) & (L.model != mine)
            return self._cut_after_last(self._owned_segments(name), old)

    @staticmethod
    def _cut_after_last(segments: list[Segment], wanted: np.ndarray) -> list[Segment]:
        """The segments holding a wanted frame, each ending after its last wanted frame."""
        out = []
        for seg in segments:
            hits = [i for i in seg.frames if wanted[i]]
            if hits:
                stop = hits[-1] + 1 if seg.direction == "forward" else hits[-1] - 1
                out.append(Segment(seg.keyframe, seg.start, stop, seg.direction, seg.version, seg.layer))
        return out

    def _segment(self, name, k, direction, stop) -> Segment:
        start = k + 1 if direction == "forward" else k - 1
        return Segment(k, start, stop, direction, self._layers[name].version[k], name)

    # -- results --------------------------------------------------------------------------------
    def apply_result(self, result, segment: "Segment | None" = None, model: "str | None" = None) -> bool:
        """Store one propagation result; returns whether it was stored.  Ignored: the keyframe's own
        result, results for keyframes, results whose keyframe is gone or (with `segment`) changed
        since the run was planned, results whose path now crosses another keyframe, and results
        from a farther keyframe than the frame's current valid result."""
        name = segment.layer if segment is not None else (
            "keypoints" if result.mask is None and result.keypoints is not None else "mask")
        value = result.mask if name == "mask" else result.keypoints
        if value is None or getattr(result, "is_keyframe", False):
            return False
        i, k = self._index(result.index), int(result.keyframe)
        with self._edit():
            L = self._layers[name]
            if k not in L.version or i in L.version or L.between(k, i):
                return False
            if segment is not None and (segment.keyframe != k or segment.version != L.version[k]
                                        or i not in segment.frames):
                return False
            if L.status[i] == PROPAGATED and abs(i - int(L.source[i])) < abs(i - k):
                return False
            _, value = self._validate(i, value, copy=False)
            self._store(L, i, PROPAGATED, k, float(result.confidence), value, self._tag_index(model))
            L.keep_soft(i, (k, 1 if i > k else -1), getattr(result, "soft", None), self.soft_frames)
            return True

    def propagate(self, propagator, segment: Segment, cancel=None, apply: bool = True,
                  model: "str | None" = None) -> Iterator:
        """Run `segment` and yield each result (the keyframe's own first).  With apply=False the
        caller applies them (`apply_result(r, segment=segment)`), e.g. on its GUI thread.  A segment
        whose keyframe changed since `plan` runs nothing: plan again."""
        with self._lock:
            L = self._layers[segment.layer]
            if L.version.get(segment.keyframe) != segment.version:
                return
            keyframes = {k: L.labels[k] for k in L.keys}
        for r in propagator.run(self.video, keyframes=keyframes, start=segment.keyframe,
                                direction=segment.direction, stop=segment.stop, cancel=cancel):
            if apply:
                self.apply_result(r, segment=segment, model=model)
            yield r

    # -- internals ------------------------------------------------------------------------------
    def _layer(self, layer: "str | None") -> _Layer:
        try:
            return self._layers[layer or self.default_layer]
        except KeyError:
            raise ConfigError(None, f"layer must be one of {LAYERS}, got {layer!r}") from None

    def _index(self, i) -> int:
        i = int(i)
        if not 0 <= i < self._n:
            raise IndexError(f"frame {i} is outside the video (0..{self._n - 1})")
        return i

    def _store(self, L: _Layer, i: int, status: int, source: int, conf: float, value, model: int = -1) -> None:
        L.status[i], L.source[i], L.conf[i], L.model[i] = status, source, conf, model
        if value is None:
            L.labels.pop(i, None)
        else:
            L.labels[i] = value
        L.drop_soft(i)
        self._emit("label", [i])
        self._emit("provenance", [i])
        L.rev[i] = self._clock

    def _validate(self, i: int, label, copy: bool):
        where = f"frame {i}"
        w, h = self._size
        if isinstance(label, Keypoints):
            if self.schema is None:
                raise LabelError(where, "keypoints given but the session has no keypoint schema")
            if len(label.xy) != len(self.schema):
                raise LabelError(where, f"{len(label.xy)} keypoints but the schema has {len(self.schema)}")
            label.check_inside(self._size, where)
            return "keypoints", Keypoints(label.xy.copy(), label.visible.copy()) if copy else label
        a = np.asarray(label)
        if a.ndim != 2:
            raise LabelError(where, f"mask must be a 2-D array of ids, got shape {a.shape}")
        if (a.shape[1], a.shape[0]) != (w, h):
            raise LabelError(where, f"mask is {a.shape[1]}x{a.shape[0]} but the video frames are {w}x{h}")
        if a.dtype == bool:
            return "mask", a.astype(np.uint8)
        if not np.issubdtype(a.dtype, np.integer):
            raise LabelError(where, f"mask must hold integer ids, got dtype {a.dtype}")
        if a.dtype != np.uint8:
            if a.size and (a.min() < 0 or a.max() > 255):
                raise LabelError(where, "mask ids must be 0..255")
            return "mask", a.astype(np.uint8)
        return "mask", a.copy() if copy else a

    # -- persistence (engine.project_io) ----------------------------------------------------------
    def save(self, folder) -> None:
        """Save the project into `folder` (see engine.project_io); clears `dirty`."""
        from . import project_io
        project_io.save(self, folder)

    def autosave(self, folder) -> None:
        """Save to `<folder>/.autosave/` for crash recovery; leaves `dirty` as it is."""
        from . import project_io
        project_io.save(self, folder, autosave=True)

    @classmethod
    def load(cls, folder, video=None, allow_mismatch: bool = False) -> "AnnotationSession":
        from . import project_io
        return project_io.load(folder, video=video, allow_mismatch=allow_mismatch)

    @staticmethod
    def has_autosave(folder) -> bool:
        from . import project_io
        return project_io.has_autosave(folder)

    @staticmethod
    def discard_autosave(folder) -> None:
        from . import project_io
        project_io.discard_autosave(folder)
