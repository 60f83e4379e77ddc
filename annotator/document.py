"""One open piece of work: the video, its AnnotationSession, where it is saved, its undo history.

The session is the single source of truth (engine.session); this class only adds what a desktop
app needs around it: a Qt signal for the session's change notifications, the undo stack, the
project folder, and a revision counter the autosaver compares against.  Everything that edits the
session goes through `commands.py` so it lands on the undo stack.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from engine import atomic
from engine.errors import ProjectError
from engine.labels import KeypointSchema, object_ids, read_keypoints, read_mask
from engine.session import AnnotationSession
from engine.video import VideoSource

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "resources" / "demo"
DEMO_VIDEO = DEMO_DIR / "demo.mp4"
DEMO_OBJECT_NAMES = {1: "blob", 2: "star", 3: "rectangle"}
FRAME_CACHE_BYTES = 512 * 2**20   # decoded frames kept by the video (an LRU): 420 at 480p, 20 at 4K


def is_project(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "project.json").is_file()


def bound_cache(video) -> None:
    w, h = video.size
    video.set_cache_frames(max(8, min(512, FRAME_CACHE_BYTES // max(1, w * h * 3))))


class Document(QObject):
    changed = Signal(str, object)        # session notification: kind, frames (range or list)
    show_frame = Signal(int)             # undo/redo asks the view to show the frame it changed

    def __init__(self, session: AnnotationSession, project_dir: "str | Path | None" = None,
                 recovered: bool = False):
        super().__init__()
        self.session = session
        self.video = session.video
        self.project_dir = Path(project_dir) if project_dir else None
        self.undo = QUndoStack(self)
        self.undo.setUndoLimit(500)
        self.revision = 0                # bumped by every session change (autosave compares it)
        self._unsaved_extra = recovered  # changes outside the undo stack (recovery, schema load)
        self.is_demo = False
        self.before_edit: list = []      # callables(layer) run before any edit (seal a running propagation)
        session.subscribe(self._on_session)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def open_media(cls, path) -> "Document":
        """A video file or frame folder, with one empty object ready to paint (VideoError if bad)."""
        video = VideoSource.open(path)
        bound_cache(video)
        return cls(AnnotationSession(video, objects={1: {"name": "object 1"}}))

    @classmethod
    def open_project(cls, folder) -> "Document":
        """A saved project folder (ProjectError naming the file and the reason if it is bad)."""
        session = AnnotationSession.load(folder)
        bound_cache(session.video)
        return cls(session, folder)

    @classmethod
    def recover(cls, autosave_folder, project_dir=None) -> "Document":
        """A session from an autosave (`<root>/.autosave`); unsaved until the user saves it."""
        session = AnnotationSession.load(autosave_folder)
        bound_cache(session.video)
        return cls(session, project_dir, recovered=True)

    @classmethod
    def open_path(cls, path) -> "Document":
        return cls.open_project(path) if is_project(path) else cls.open_media(path)

    @classmethod
    def open_demo(cls) -> "Document":
        """The bundled demo clip with its first-frame masks and keypoints as keyframes, so a new
        user can press F and watch propagation at once."""
        video = VideoSource.open(DEMO_VIDEO)
        bound_cache(video)
        schema, kp = read_keypoints(DEMO_DIR / "demo_keypoints_00000.json", size=video.size)
        mask = read_mask(DEMO_DIR / "demo_mask_00000.png", size=video.size)
        objects = {oid: {"name": DEMO_OBJECT_NAMES.get(oid, f"object {oid}")} for oid in object_ids(mask)}
        session = AnnotationSession(video, schema, objects)
        session.set_keyframe(0, mask)
        session.set_keyframe(0, kp)
        doc = cls(session)
        doc.is_demo = True
        doc.undo.setClean()
        return doc

    # -- state ----------------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """Unsaved work: any change since the last save.  Every edit is an undo command, so the
        stack's clean state is the truth; `_unsaved_extra` covers what is not (a recovered session)."""
        return self._unsaved_extra or not self.undo.isClean()

    def mark_changed(self) -> None:
        self._unsaved_extra = True

    @property
    def title(self) -> str:
        name = self.project_dir.name if self.project_dir else Path(self.video.path).name
        return name + (" (demo)" if self.is_demo and not self.project_dir else "")

    def set_schema(self, schema: KeypointSchema) -> None:
        """Use a keypoint schema.  Replacing one is allowed while no frame has keypoints, or when the
        new one has the same number of points (renames, colours, skeleton edits)."""
        s = self.session
        old = s.schema
        has_points = bool(s.keyframes("keypoints")) or (s.status_array("keypoints") != 0).any()
        if old is not None and has_points and len(old) != len(schema):
            from engine.errors import LabelError
            raise LabelError(None, f"the project already has keypoints for {len(old)} points; "
                                   f"a schema with {len(schema)} points does not fit them")
        s.schema = schema
        self.mark_changed()
        self.changed.emit("schema", range(0))

    # -- the project's own model (adapted to this video) -----------------------------------------
    def model_path(self) -> "Path | None":
        """The checkpoint this project propagates with, when it has its own (session setting
        `model`, relative to the project folder once saved); None = the app's model setting."""
        value = self.session.settings.get("model")
        if not value:
            return None
        p = Path(value)
        if not p.is_absolute() and self.project_dir is not None:
            p = self.project_dir / p
        return p

    def set_model(self, path: "Path | None") -> None:
        rel = None
        if path is not None:
            path = Path(path)
            inside = self.project_dir is not None and path.parent.resolve() == (self.project_dir / "models").resolve()
            rel = f"models/{path.name}" if inside else str(path)
        self.session.update_settings(model=rel)

    # -- saving ---------------------------------------------------------------------------------
    def save(self, folder=None) -> Path:
        folder = Path(folder) if folder else self.project_dir
        if folder is None:
            raise ValueError("no project folder yet: use save(folder)")
        model = self.model_path()
        outside = model is not None and model.parent.resolve() != (folder / "models").resolve()
        if outside:   # the project keeps its own copy of its adapted model
            if not model.is_file():
                raise ProjectError(model, "the project's model file is missing; cannot save it into the project")
            self.session.update_settings(model=f"models/{model.name}")
        try:
            self.session.save(folder)       # atomic (staged folder swapped in); drops the autosave
        except Exception:
            if outside:
                self.session.update_settings(model=str(model))
            raise
        if outside:
            (folder / "models").mkdir(exist_ok=True)
            atomic.write_with(folder / "models" / model.name, lambda tmp: shutil.copyfile(model, tmp))
        self.project_dir = folder
        self.undo.setClean()
        self._unsaved_extra = False
        self.is_demo = False
        return folder

    def close(self) -> None:
        self.session.unsubscribe(self._on_session)
        try:
            self.video.close()
        except Exception:   # closing must never stop the app from closing
            pass

    def _on_session(self, kind: str, frames) -> None:
        self.revision += 1
        self.changed.emit(kind, frames)
