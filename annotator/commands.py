"""Every edit of the session is an undo command (QUndoStack; SLEAP's "every action is a command").

An edit runs first, outside the stack, so an engine error (a LabelError for a bad mask) reaches the
caller as an exception and nothing is pushed; then the change it made, as recorded by
`engine.history` (the frames, provenance and keyframes that differ), is pushed as an already-done
command.  Undo and redo restore the recorded states, so they are exact whatever the edit was: a
paint stroke, a fill, a keypoint drag, adding or deleting an object, or a whole propagation run.
"""
from __future__ import annotations

from typing import Callable

from PySide6.QtGui import QUndoCommand

from engine.history import Change, capture, diff, restore


class RecordedChange(QUndoCommand):
    def __init__(self, doc, text: str, change: Change, frame: "int | None" = None):
        super().__init__(text)
        self.doc, self.change, self.frame = doc, change, frame
        self._done = True    # the edit already happened when it was pushed

    def redo(self) -> None:
        if self._done:
            self._done = False
            return
        restore(self.doc.session, self.change.after)
        self._show()

    def undo(self) -> None:
        restore(self.doc.session, self.change.before)
        self._show()

    def _show(self) -> None:
        if self.frame is not None:
            self.doc.show_frame.emit(self.frame)


def record(doc, text: str, layer: str, edit: Callable[[], object], frame: "int | None" = None) -> bool:
    """Run `edit()` on the session and push what it changed; False when it changed nothing."""
    for hook in list(doc.before_edit):
        hook(layer)
    before = capture(doc.session, layer)
    edit()
    return push_change(doc, text, diff(before, capture(doc.session, layer)), frame)


def push_change(doc, text: str, change: Change, frame: "int | None" = None) -> bool:
    if not change:
        return False
    doc.undo.push(RecordedChange(doc, text, change, frame))
    return True


# -- the edits the app makes (names say what the user did) ----------------------------------------
def set_mask(doc, frame: int, mask, text: str = "Paint") -> bool:
    return record(doc, f"{text} on frame {frame}", "mask", lambda: doc.session.set_keyframe(frame, mask), frame)


def set_keypoints(doc, frame: int, keypoints, text: str = "Move keypoint") -> bool:
    return record(doc, f"{text} on frame {frame}", "keypoints",
                  lambda: doc.session.set_keyframe(frame, keypoints), frame)


def clear_frame(doc, frame: int, layer: str) -> bool:
    return record(doc, f"Clear keyframe {frame}", layer, lambda: doc.session.remove_keyframe(frame, layer), frame)


def add_object(doc, name: "str | None" = None) -> int:
    out = {}
    record(doc, "Add object", "mask", lambda: out.setdefault("id", doc.session.add_object(name)))
    return out["id"]


def delete_object(doc, oid: int) -> bool:
    name = doc.session.objects[oid]["name"]
    return record(doc, f"Delete object {name!r}", "mask", lambda: doc.session.delete_object(oid))


def rename_object(doc, oid: int, name: str) -> bool:
    return record(doc, f"Rename object to {name!r}", "mask", lambda: doc.session.rename_object(oid, name))


def recolour_object(doc, oid: int, colour) -> bool:
    return record(doc, "Change object colour", "mask", lambda: doc.session.set_object_colour(oid, colour))
