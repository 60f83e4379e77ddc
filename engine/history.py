"""Undo support for AnnotationSession: capture the state of one layer and put it back later.

An editor's undo stack needs "the frames as they were before this edit" (the label, its provenance,
its confidence, which frames were keyframes) without copying the video's labels on every stroke.
Stored labels are never modified in place (the session's rule), so a capture holds references,
and `diff` keeps only the frames an edit actually changed; a paint stroke on a 10,000-frame video
costs a few arrays of the layer's length while it is recorded and a handful of frames afterwards.

    before = capture(session, "mask")
    session.set_keyframe(12, new_mask)            # any edits, or applying a propagation run
    change = diff(before, capture(session, "mask"))
    restore(session, change.before)               # undo
    restore(session, change.after)                # redo

Restoring gives every keyframe it touches a fresh version, so results of a propagation run planned
before the restore are dropped by `apply_result` (the run saw other labels).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .session import AnnotationSession


@dataclass(frozen=True)
class LayerState:
    """The state of `frames` of one layer (all frames when captured whole), plus the keyframe list
    and, for the mask layer, the objects table."""
    layer: str
    frames: np.ndarray                   # int64 frame indices
    status: np.ndarray                   # int8, codes of session.KINDS
    source: np.ndarray                   # int64, -1 where none
    conf: np.ndarray                     # float32, NaN where empty
    model: np.ndarray                    # int16, index into session.model_tags, -1 where none
    labels: dict = field(default_factory=dict)   # frame -> label (references, never copies)
    keys: tuple = ()
    objects: "dict | None" = None

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class Change:
    before: LayerState
    after: LayerState

    @property
    def frames(self) -> list[int]:
        return self.before.frames.tolist()

    def __bool__(self) -> bool:
        return bool(len(self.before.frames)) or self.before.keys != self.after.keys \
            or self.before.objects != self.after.objects


def capture(session: AnnotationSession, layer: "str | None" = None) -> LayerState:
    """The whole layer as it is now: O(frames) small arrays and one dict of references."""
    name = layer or session.default_layer
    with session._lock:
        L = session._layer(name)
        return LayerState(name, np.arange(len(session)), L.status.copy(), L.source.copy(), L.conf.copy(),
                          L.model.copy(), dict(L.labels), tuple(L.keys), session.objects if name == "mask" else None)


def diff(before: LayerState, after: LayerState) -> Change:
    """The frames that differ between two whole-layer captures, as a pair of small states."""
    if before.layer != after.layer:
        raise ValueError(f"captures of different layers ({before.layer}, {after.layer})")
    changed = (before.status != after.status) | (before.source != after.source) | (before.model != after.model) \
        | ~((before.conf == after.conf) | (np.isnan(before.conf) & np.isnan(after.conf)))
    for i in set(before.labels) | set(after.labels):
        if before.labels.get(i) is not after.labels.get(i):
            changed[i] = True
    idx = np.flatnonzero(changed)
    return Change(_subset(before, idx), _subset(after, idx))


def _subset(s: LayerState, idx: np.ndarray) -> LayerState:
    return LayerState(s.layer, idx, s.status[idx], s.source[idx], s.conf[idx], s.model[idx],
                      {int(i): s.labels[int(i)] for i in idx if int(i) in s.labels}, s.keys, s.objects)


def restore(session: AnnotationSession, state: LayerState) -> None:
    """Put the captured frames, keyframe list (and objects table) back; notifies subscribers."""
    with session._edit():
        L = session._layer(state.layer)
        if state.objects is not None and state.objects != session._objects:
            session._objects = {int(k): dict(v) for k, v in state.objects.items()}
            session._emit("objects", range(len(session)))
        for j, i in enumerate(state.frames.tolist()):
            L.status[i], L.source[i], L.conf[i] = state.status[j], state.source[j], state.conf[j]
            L.model[i] = state.model[j]
            label = state.labels.get(i)
            if label is not L.labels.get(i):
                if label is None:
                    L.labels.pop(i, None)
                else:
                    L.labels[i] = label
                session._emit("label", [i])
            L.drop_soft(i)
            session._emit("provenance", [i])
            L.rev[i] = session._clock
        keys = list(state.keys)
        if keys != L.keys or len(state.frames):
            changed_keys = set(keys) ^ set(L.keys)
            L.keys = keys
            for k in list(L.version):
                if k not in keys:
                    del L.version[k]
            for k in keys:
                if k not in L.version or k in state.labels:
                    L.version[k] = session._clock   # fresh: in-flight runs from the old label are dropped
            if changed_keys:
                session._emit("keyframes", changed_keys)
