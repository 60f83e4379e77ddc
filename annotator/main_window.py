"""The main window: menus, tool bars, docks, status bar, and the wiring between the parts.

No labelling logic lives here: edits are `commands`, propagation is `PropagationController`,
painting is the canvas's, saving is the engine's.  This class connects them, owns the open
`Document`, and turns every engine error into a dialog that names the file and the reason.
"""
from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (QCheckBox, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox,
                               QProgressBar, QPushButton, QSlider, QSpinBox, QSplitter, QToolBar)

from engine.errors import AffinityError
from engine.labels import read_mask

from . import commands
from .adaptation import AdaptationController
from .canvas import CanvasView
from .dialogs import ErrorReporter, SchemaDialog, SettingsDialog, ShortcutsDialog
from .document import Document, is_project
from .export_menu import FORMATS as EXPORT_FORMATS
from .export_menu import ExportRunner, ask_destination, exporter
from .keymap import Keymap
from .keypoints_panel import KeypointsPanel
from .objects_panel import ObjectsPanel
from .propagation import PropagationController
from .recovery import Autosaver, RecoveryRegistry
from .settings import AppSettings
from .state import AppState
from .timeline import TimelineWidget

APP_NAME = "Affinity Annotator"
MEDIA_FILTER = ("Videos and images (*.mp4 *.mov *.mkv *.avi *.webm *.m4v *.jpg *.jpeg *.png);;All files (*)")


class MainWindow(QMainWindow):
    def __init__(self, settings: "AppSettings | None" = None, registry: "RecoveryRegistry | None" = None,
                 keymap: "Keymap | None" = None):
        super().__init__()
        self.settings = settings or AppSettings()
        self.keymap = keymap or Keymap()
        self.registry = registry or RecoveryRegistry()
        self.state = AppState()
        self.state.set_opacity(self.settings.get("view/opacity"))
        self.errors = ErrorReporter(self)
        self.doc: "Document | None" = None
        self.confirm_close = self._ask_save_discard_cancel   # replaced in tests
        self.actions: dict[str, QAction] = {}
        self._follow_head = True
        self._pending_frame = False
        self.inspector = None

        self.canvas = CanvasView(self.state)
        self.timeline = TimelineWidget()
        self.timeline.set_low_confidence(self.settings.get("timeline/low_confidence"))
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.canvas)
        split.addWidget(self.timeline)
        split.setStretchFactor(0, 5)
        split.setStretchFactor(1, 1)
        split.setSizes([600, 130])
        self.setCentralWidget(split)
        self.objects_panel = ObjectsPanel(self.state)
        self.keypoints_panel = KeypointsPanel(self.state)
        self.objects_dock = self._dock("Objects", self.objects_panel)
        self.keypoints_dock = self._dock("Keypoints", self.keypoints_panel)

        self.propagation = PropagationController(self.settings, self)
        self.adaptation = AdaptationController(self.settings, self.propagation, self)
        self.propagation.gate = self.adaptation.gate
        self.autosaver = Autosaver(self.registry, self.settings.get("autosave/interval_s"), self)
        self.exports = ExportRunner(self)
        self.play_timer = QTimer(self)
        self.play_timer.timeout.connect(self._play_tick)

        self._build_status_bar()
        self._build_actions()
        self._build_menus()
        self._build_toolbars()
        self._connect()
        self.setAcceptDrops(True)
        self.resize(1280, 860)
        self._update_title()

    # -- construction ---------------------------------------------------------------------------
    def _dock(self, title, widget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(Qt.RightDockWidgetArea, dock)
        return dock

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.message = QLabel()
        self.model_note = QLabel()
        self.model_note.setStyleSheet("color: #e0a030;")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_running)
        bar.addWidget(self.message, 1)
        bar.addPermanentWidget(self.model_note)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)

    def _action(self, aid: str, text: str, slot=None, checkable: bool = False, tip: str = "") -> QAction:
        act = QAction(text, self)
        act.setShortcuts([QKeySequence(s) for s in self.keymap.sequences(aid)])
        act.setShortcutContext(Qt.WindowShortcut)
        act.setCheckable(checkable)
        if tip:
            act.setToolTip(tip)
        if slot is not None:
            act.triggered.connect(slot)
        self.addAction(act)    # shortcuts work even for actions in no visible menu
        self.actions[aid] = act
        return act

    def _build_actions(self) -> None:
        a = self._action
        a("file.open", "&Open video or folder…", self.open_dialog)
        a("file.open_project", "Open &project…", self.open_project_dialog)
        a("file.save", "&Save", self.save)
        a("file.save_as", "Save &as…", self.save_as)
        a("file.import_mask", "&Import mask for this frame…", self.import_mask_dialog)
        a("file.quit", "&Quit", self.close)
        a("edit.undo", "&Undo", self.undo)
        a("edit.redo", "&Redo", self.redo)
        a("edit.clear_frame", "&Clear this keyframe", self.clear_keyframe)
        a("edit.settings", "&Settings…", self.settings_dialog)
        a("model.adapt", "&Adapt model to this video", self.adapt_model,
          tip="Fine-tune the model on this video's own frames (self-supervised), then propagate with it.\n"
              "Measured to help masks (+0.04 to +0.09 J&F on DAVIS), not keypoints (PCK unchanged or lower).")
        a("model.use_app_model", "Use the app's &model again", self.use_app_model)
        a("propagate.outdated", "Re-propagate frames of &earlier models", self.repropagate_outdated)
        a("view.zoom_in", "Zoom &in", lambda: self.canvas.zoom(1.25))
        a("view.zoom_out", "Zoom &out", lambda: self.canvas.zoom(0.8))
        a("view.fit", "&Fit to window", self.canvas.fit)
        a("view.toggle_overlay", "Show &labels", lambda on: self.state.set_overlay_visible(on), checkable=True)
        self.actions["view.toggle_overlay"].setChecked(True)
        a("view.inspector", "Affinity &inspector", self.toggle_inspector, checkable=True)
        a("nav.next", "Next frame", lambda: self.step(1))
        a("nav.prev", "Previous frame", lambda: self.step(-1))
        a("nav.next10", "Forward 10 frames", lambda: self.step(10))
        a("nav.prev10", "Back 10 frames", lambda: self.step(-10))
        a("nav.first", "First frame", lambda: self.go_to(0, user=True))
        a("nav.last", "Last frame", lambda: self.go_to(len(self.doc.session) - 1 if self.doc else 0, user=True))
        a("nav.next_keyframe", "Next keyframe", lambda: self.jump_keyframe(1))
        a("nav.prev_keyframe", "Previous keyframe", lambda: self.jump_keyframe(-1))
        a("nav.next_low_confidence", "Next low-confidence frame", self.jump_low_confidence)
        a("nav.play", "Play / pause", self.toggle_play, checkable=True)
        tools = QActionGroup(self)
        for tid, text, tip in (("brush", "Brush", "Paint the selected object (B; [ and ] change the size)"),
                               ("eraser", "Eraser", "Erase (E)"),
                               ("fill", "Fill", "Flood-fill a region with the selected object (G)"),
                               ("polygon", "Polygon", "Click corners; double-click, Enter or right-click closes (P)"),
                               ("keypoints", "Keypoints", "Place and drag keypoints (K)"),
                               ("pan", "Pan", "Drag to pan (H); the middle button pans with any tool"),
                               ("inspect", "Inspect", "Click a pixel to see its affinity in the inspector (I)")):
            act = a(f"tool.{tid}", text, lambda _=False, t=tid: self.state.set_tool(t), checkable=True, tip=tip)
            tools.addAction(act)
        self.actions["tool.brush"].setChecked(True)
        a("tool.brush_smaller", "Smaller brush", lambda: self.state.set_brush_size(self.state.brush_size * 0.8))
        a("tool.brush_larger", "Larger brush",
          lambda: self.state.set_brush_size(max(self.state.brush_size + 1, self.state.brush_size * 1.25)))
        a("tool.paint_behind", "Paint behind other objects", lambda on: self.state.set_paint_behind(on),
          checkable=True, tip="Behind: painting only claims background; over: it replaces other objects")
        a("object.add", "Add object", self.objects_panel.add_object)
        for n in range(1, 10):
            a(f"object.select_{n}", f"Select object {n}", lambda _=False, n=n: self.objects_panel.select_number(n))
        a("keypoint.absent", "Mark keypoint absent", self.canvas.mark_keypoint_absent)
        a("keypoint.delete", "Delete keypoint", self.canvas.mark_keypoint_absent)
        a("keypoint.next", "Next keypoint", self.keypoints_panel.select_next)
        a("propagate.forward", "Propagate &forward", lambda: self.propagate("forward"))
        a("propagate.backward", "Propagate &backward", lambda: self.propagate("backward"))
        a("propagate.both", "Propagate both &ways", lambda: self.propagate("both"))
        a("propagate.stale", "&Re-propagate stale frames", self.repropagate)
        a("propagate.all", "Propagate &all (fill every gap)", self.propagate_all)
        a("propagate.cancel", "&Cancel propagation", self.escape)
        a("help.shortcuts", "&Keyboard shortcuts", self.shortcuts_dialog)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        for aid in ("file.open", "file.open_project"):
            m.addAction(self.actions[aid])
        self.recent_menu = m.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        m.addSeparator()
        m.addAction(self.actions["file.save"])
        m.addAction(self.actions["file.save_as"])
        m.addSeparator()
        m.addAction(self.actions["file.import_mask"])
        m.addAction("Load keypoint &schema…", self.keypoints_panel.load_schema_dialog)
        self.export_menu = m.addMenu("&Export")
        module, why = exporter()
        for fmt, text, *_ in EXPORT_FORMATS:
            act = self.export_menu.addAction(text, lambda _=False, f=fmt: self.export_dialog(f))
            act.setEnabled(module is not None)
            act.setToolTip(why)
            self.actions[f"export.{fmt}"] = act
        m.addSeparator()
        m.addAction(self.actions["file.quit"])
        m = mb.addMenu("&Edit")
        for aid in ("edit.undo", "edit.redo", None, "edit.clear_frame", None, "edit.settings"):
            m.addSeparator() if aid is None else m.addAction(self.actions[aid])
        m = mb.addMenu("&View")
        for aid in ("view.zoom_in", "view.zoom_out", "view.fit", None, "view.toggle_overlay", "view.inspector"):
            m.addSeparator() if aid is None else m.addAction(self.actions[aid])
        m.addSeparator()
        m.addAction(self.objects_dock.toggleViewAction())
        m.addAction(self.keypoints_dock.toggleViewAction())
        m = mb.addMenu("&Navigate")
        for aid in ("nav.play", None, "nav.next", "nav.prev", "nav.next10", "nav.prev10", "nav.first", "nav.last",
                    None, "nav.next_keyframe", "nav.prev_keyframe", "nav.next_low_confidence"):
            m.addSeparator() if aid is None else m.addAction(self.actions[aid])
        m = mb.addMenu("&Tools")
        for aid in ("tool.brush", "tool.eraser", "tool.fill", "tool.polygon", "tool.keypoints", "tool.pan",
                    "tool.inspect", None,
                    "tool.brush_smaller", "tool.brush_larger", "tool.paint_behind", None, "object.add",
                    "keypoint.absent", "keypoint.next"):
            m.addSeparator() if aid is None else m.addAction(self.actions[aid])
        m = mb.addMenu("&Propagate")
        for aid in ("propagate.forward", "propagate.backward", "propagate.both", None, "propagate.stale",
                    "propagate.outdated", "propagate.all", None, "propagate.cancel"):
            m.addSeparator() if aid is None else m.addAction(self.actions[aid])
        self.auto_action = m.addAction("Re-propagate &automatically after corrections")
        self.auto_action.setCheckable(True)
        self.auto_action.setChecked(self.settings.get("propagation/auto_repropagate"))
        self.auto_action.toggled.connect(lambda on: self.settings.set("propagation/auto_repropagate", on))
        m = mb.addMenu("&Model")
        m.addAction(self.actions["model.adapt"])
        self.auto_adapt_action = m.addAction("Adapt &before the first propagation")
        self.auto_adapt_action.setCheckable(True)
        self.auto_adapt_action.setChecked(self.settings.get("adapt/auto"))
        self.auto_adapt_action.toggled.connect(lambda on: self.settings.set("adapt/auto", on))
        m.addAction(self.actions["model.use_app_model"])
        m = mb.addMenu("&Help")
        m.addAction(self.actions["help.shortcuts"])

    def _build_toolbars(self) -> None:
        tb = QToolBar("Tools", self)
        tb.setObjectName("tools")
        tb.setIconSize(QSize(16, 16))
        for aid in ("tool.brush", "tool.eraser", "tool.fill", "tool.polygon", "tool.keypoints", "tool.pan",
                    "tool.inspect"):
            tb.addAction(self.actions[aid])
        tb.addSeparator()
        tb.addWidget(QLabel(" Size "))
        self.brush_spin = QSpinBox()
        self.brush_spin.setRange(AppState.MIN_BRUSH, AppState.MAX_BRUSH)
        self.brush_spin.setValue(self.state.brush_size)
        self.brush_spin.setToolTip("Brush diameter in pixels ([ and ], or Shift+wheel)")
        self.brush_spin.valueChanged.connect(self.state.set_brush_size)
        tb.addWidget(self.brush_spin)
        self.behind_check = QCheckBox("Behind")
        self.behind_check.setToolTip(self.actions["tool.paint_behind"].toolTip())
        self.behind_check.toggled.connect(self.state.set_paint_behind)
        tb.addWidget(self.behind_check)
        tb.addWidget(QLabel("  Opacity "))
        self.opacity_slider = QSlider(Qt.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(int(self.state.opacity * 100))
        self.opacity_slider.setMaximumWidth(110)
        self.opacity_slider.valueChanged.connect(lambda v: self.state.set_opacity(v / 100))
        tb.addWidget(self.opacity_slider)
        self.addToolBar(tb)
        pb = QToolBar("Propagation", self)
        pb.setObjectName("propagation")
        for aid in ("nav.play", "propagate.backward", "propagate.both", "propagate.forward", "propagate.stale"):
            pb.addAction(self.actions[aid])
        self.actions["propagate.forward"].setText("Forward ▶")
        self.actions["propagate.backward"].setText("◀ Backward")
        self.actions["propagate.both"].setText("◀ Both ▶")
        self.actions["propagate.stale"].setText("Re-propagate stale")
        self.actions["nav.play"].setText("Play")
        self.addToolBar(pb)

    def _connect(self) -> None:
        s = self.state
        s.frame_changed.connect(self._schedule_frame)
        s.layer_changed.connect(self.timeline.set_layer)
        s.layer_changed.connect(lambda _: self.canvas.viewport().update())
        s.brush_changed.connect(self.brush_spin.setValue)
        s.paint_behind_changed.connect(self.behind_check.setChecked)
        s.paint_behind_changed.connect(self.actions["tool.paint_behind"].setChecked)
        s.opacity_changed.connect(lambda v: self.opacity_slider.setValue(int(round(v * 100))))
        s.opacity_changed.connect(lambda v: self.settings.set("view/opacity", v))
        s.tool_changed.connect(lambda t: self.actions[f"tool.{t}"].setChecked(True))
        self.timeline.frame_requested.connect(lambda i: self.go_to(i, user=True))
        self.canvas.status_message.connect(self.message.setText)
        self.canvas.error.connect(self.errors.show)
        self.objects_panel.error.connect(self.errors.show)
        self.keypoints_panel.error.connect(self.errors.show)
        self.keypoints_panel.schema_requested.connect(self.schema_dialog)
        p = self.propagation
        p.started.connect(self._on_propagation_started)
        p.progress.connect(self._on_propagation_progress)
        p.frame_applied.connect(self._on_frame_applied)
        p.ended.connect(self._on_propagation_ended)
        p.failed.connect(self._on_propagation_failed)
        p.note.connect(self.model_note.setText)
        ad = self.adaptation
        ad.started.connect(self._on_adapt_started)
        ad.progress.connect(self._on_adapt_progress)
        ad.ended.connect(self._on_adapt_ended)
        ad.failed.connect(self.errors.show)
        ad.model_changed.connect(self._on_model_changed)
        self.autosaver.failed.connect(self.message.setText)
        self.exports.done.connect(self._on_export_done)
        self.exports.failed.connect(self.errors.show)
        self.exports.progress.connect(lambda d, t: self.message.setText(f"Exporting… {d}/{t}"))

    # -- documents ------------------------------------------------------------------------------
    def set_document(self, doc: Document) -> None:
        self._release_document()
        self.doc = doc
        self.state.set_frame(0)
        if doc.session.schema is None and self.state.layer == "keypoints":
            self.state.set_tool("brush")      # nothing to place without a schema: back to masks
        doc.changed.connect(self._on_session_changed)
        doc.show_frame.connect(self.go_to)
        doc.undo.cleanChanged.connect(self._update_title)
        doc.undo.indexChanged.connect(self._update_undo_texts)
        self.canvas.set_document(doc)
        self.timeline.set_session(doc.session, self.state.layer)
        self.objects_panel.set_document(doc)
        self.keypoints_panel.set_document(doc)
        self.propagation.set_document(doc)
        self.propagation.auto_layer = self.state.layer
        self.adaptation.set_document(doc)
        self._on_model_changed(self.propagation.models.tag())
        self.autosaver.attach(doc)
        self._attach_inspector()
        self._show_frame_now()
        self._update_title()
        self._update_undo_texts()
        w, h = doc.video.size
        self.message.setText(f"{Path(doc.video.path).name}: {len(doc.session)} frames, {w}x{h}, "
                             f"{getattr(doc.video, 'fps', 0):.2f} fps")

    def _release_document(self) -> None:
        """Stop the run, the autosave and every signal of the current document, and close it."""
        old, self.doc = self.doc, None
        if old is None:
            return
        self.adaptation.cancel()
        self.adaptation.wait(30000)
        self.adaptation.set_document(None)
        self.propagation.detach()
        self.propagation.wait(30000)
        self.autosaver.detach(discard=True)
        for signal in (old.changed, old.show_frame, old.undo.cleanChanged, old.undo.indexChanged):
            try:
                signal.disconnect()
            except (RuntimeError, TypeError):
                pass
        old.close()

    def open_path(self, path, ask: bool = True) -> bool:
        """Open a video, frame folder or project; a bad file gets a dialog and the current work stays."""
        if ask and not self._maybe_save():
            return False
        try:
            doc = Document.open_path(path)
        except (AffinityError, OSError) as exc:
            self.errors.show(f"Cannot open {Path(path).name}", self._describe(exc, path))
            self.settings.remove_recent(str(path))
            return False
        self.set_document(doc)
        self.settings.add_recent(str(Path(path).absolute()))
        return True

    def open_demo(self) -> None:
        try:
            self.set_document(Document.open_demo())
        except AffinityError as exc:
            self.errors.show("Cannot open the bundled demo", str(exc))

    @staticmethod
    def _describe(exc, path) -> str:
        if isinstance(exc, AffinityError):
            return f"{exc.path or path}\n\n{exc.reason}"
        return f"{path}\n\n{exc}"

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", "", MEDIA_FILTER)
        if path:
            # an image picked from a frame folder means the folder
            self.open_path(Path(path).parent if Path(path).suffix.lower() in (".jpg", ".jpeg", ".png") else path)

    def open_project_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open project folder or frame folder")
        if path:
            self.open_path(path)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent_files():
            self.recent_menu.addAction(p, lambda _=False, p=p: self.open_path(p))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def save(self) -> bool:
        if self.doc is None:
            return False
        if self.doc.project_dir is None:
            return self.save_as()
        return self._save_to(self.doc.project_dir)

    def save_as(self) -> bool:
        if self.doc is None:
            return False
        suggestion = Path.home() / f"{Path(self.doc.video.path).stem}-project"
        path, _ = QFileDialog.getSaveFileName(self, "Save project as folder", str(suggestion),
                                              "Affinity Annotator project folder (*)")
        return self._save_to(path) if path else False

    def _save_to(self, folder) -> bool:
        self.propagation.seal()
        self.autosaver.wait()
        try:
            self.doc.save(folder)
        except (AffinityError, OSError) as exc:
            self.errors.show("Cannot save the project", self._describe(exc, folder))
            return False
        self.autosaver.project_saved()
        self.settings.add_recent(str(Path(folder).absolute()))
        self._update_title()
        self.message.setText(f"Saved {folder}")
        return True

    def import_mask_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import mask for this frame", "", "Index PNG (*.png)")
        if path:
            self.import_mask(path)

    def import_mask(self, path) -> bool:
        if self.doc is None:
            return False
        try:
            mask = read_mask(path, size=self.doc.video.size)
            commands.set_mask(self.doc, self.state.frame, mask, "Import mask")
        except AffinityError as exc:
            self.errors.show("Cannot import the mask", self._describe(exc, path))
            return False
        self.objects_panel.refresh()
        return True

    def export_dialog(self, fmt: str) -> None:
        if self.doc is None:
            return
        suggestion = (self.doc.project_dir or Path.home() / Path(self.doc.video.path).stem)
        path = ask_destination(self, fmt, Path(suggestion))
        if path:
            self.export(fmt, path)

    def export(self, fmt: str, path, **options) -> bool:
        self.propagation.seal()
        if fmt == "video":
            options.setdefault("opacity", self.state.opacity)
        ok = self.exports.start(self.doc.session, fmt, path, **options)
        if ok:
            self.message.setText(f"Exporting {fmt} to {path}…")
        return ok

    def _on_export_done(self, fmt: str, summary: dict) -> None:
        self.message.setText(f"Exported {summary.get('frames', '?')} frames ({fmt}) to {summary.get('path', '')}")

    # -- closing --------------------------------------------------------------------------------
    def _ask_save_discard_cancel(self) -> str:
        box = QMessageBox(QMessageBox.Question, APP_NAME, f"Save the changes to {self.doc.title}?",
                          QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, self)
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(box.exec(), "cancel")

    def _maybe_save(self) -> bool:
        """True when it is fine to drop the current document (saved, or the user said so)."""
        if self.doc is None or not self.doc.dirty:
            return True
        answer = self.confirm_close()
        if answer == "save":
            return self.save()
        return answer == "discard"

    def closeEvent(self, event) -> None:
        if not self._maybe_save():
            event.ignore()
            return
        self.play_timer.stop()
        self.exports.wait()
        self._release_document()
        self.autosaver.timer.stop()
        self.settings.sync()
        event.accept()

    # -- drag and drop --------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            QTimer.singleShot(0, lambda: self.open_dropped(paths[0]))

    def open_dropped(self, path: str) -> None:
        """A dropped index PNG is a mask for this frame, a schema file a keypoint schema,
        anything else a video, frame folder or project."""
        p = Path(path)
        if self.doc is not None and p.suffix.lower() == ".png" and p.is_file():
            self.import_mask(p)
        elif self.doc is not None and p.suffix.lower() in (".yaml", ".yml", ".json") and not is_project(p):
            self.keypoints_panel.load_schema(p)
        else:
            self.open_path(p)

    # -- navigation -----------------------------------------------------------------------------
    def go_to(self, i: int, user: bool = False) -> None:
        """Show frame i (clamped); `user`: the person navigated (stops following a running propagation)."""
        if self.doc is None:
            return
        if user and self.propagation.running:
            self._follow_head = False     # the person took over the view
        self.state.set_frame(int(min(max(i, 0), len(self.doc.session) - 1)))

    def step(self, delta: int) -> None:
        self.go_to(self.state.frame + delta, user=True)

    def _schedule_frame(self, _i: int) -> None:
        # Coalesce: a fast drag on the timeline asks for many frames; only the last one is drawn.
        self.canvas.pause_warming()       # the requested frame goes first
        if not self._pending_frame:
            self._pending_frame = True
            QTimer.singleShot(0, self._show_frame_now)

    def _show_frame_now(self) -> None:
        self._pending_frame = False
        i = self.state.frame
        self.canvas.show_frame(i)
        self.timeline.set_frame(i)
        if self.inspector is not None and self.inspector.isVisible():
            self.inspector.set_frame_a(i)

    def jump_keyframe(self, direction: int) -> None:
        if self.doc is None:
            return
        keys = self.doc.session.keyframes(self.state.layer)
        i = self.state.frame
        if direction > 0:
            p = bisect.bisect_right(keys, i)
            target = keys[p] if p < len(keys) else None
        else:
            p = bisect.bisect_left(keys, i) - 1
            target = keys[p] if p >= 0 else None
        if target is None:
            self.message.setText("No keyframe " + ("after" if direction > 0 else "before") + " this frame")
        else:
            self.go_to(target, user=True)

    def jump_low_confidence(self) -> None:
        if self.doc is None:
            return
        s = self.doc.session
        layer = self.state.layer
        conf = s.confidence_array(layer)
        status = s.status_array(layer)
        low = (conf < self.settings.get("timeline/low_confidence")) & ((status == 2) | (status == 3))
        after = np.flatnonzero(low[self.state.frame + 1:])
        if len(after):
            self.go_to(self.state.frame + 1 + int(after[0]), user=True)
        else:
            self.message.setText("No low-confidence frame after this one")

    def toggle_play(self, on: "bool | None" = None) -> None:
        on = not self.play_timer.isActive() if on is None else on
        if on and self.doc is not None:
            fps = float(getattr(self.doc.video, "fps", 25) or 25)
            self.play_timer.start(int(1000 / min(60.0, max(1.0, fps))))
        else:
            self.play_timer.stop()
        self.actions["nav.play"].setChecked(self.play_timer.isActive())
        self.actions["nav.play"].setText("Pause" if self.play_timer.isActive() else "Play")

    def _play_tick(self) -> None:
        if self.doc is None or self.state.frame >= len(self.doc.session) - 1:
            self.toggle_play(False)
            return
        self.go_to(self.state.frame + 1, user=True)

    # -- editing --------------------------------------------------------------------------------
    def undo(self) -> None:
        if self.doc is not None:
            self.propagation.seal()
            self.doc.undo.undo()

    def redo(self) -> None:
        if self.doc is not None:
            self.propagation.seal()
            self.doc.undo.redo()

    def _update_undo_texts(self, _index: int = 0) -> None:
        if self.doc is None:
            return
        u = self.doc.undo
        self.actions["edit.undo"].setText(f"&Undo {u.undoText()}" if u.canUndo() else "&Undo")
        self.actions["edit.redo"].setText(f"&Redo {u.redoText()}" if u.canRedo() else "&Redo")
        self.actions["edit.undo"].setEnabled(u.canUndo())
        self.actions["edit.redo"].setEnabled(u.canRedo())
        self._update_title()

    def clear_keyframe(self) -> None:
        if self.doc is not None:
            commands.clear_frame(self.doc, self.state.frame, self.state.layer)

    def escape(self) -> None:
        """Escape: close an unfinished polygon first, else cancel a running propagation."""
        if not self.canvas.cancel_polygon():
            self.cancel_propagation()

    # -- propagation ----------------------------------------------------------------------------
    def propagate(self, direction: str) -> bool:
        if self.doc is None:
            return False
        return self.propagation.propagate(self.state.frame, direction, self.state.layer)

    def repropagate(self) -> bool:
        return self.doc is not None and self.propagation.repropagate_stale(self.state.layer)

    def propagate_all(self) -> bool:
        return self.doc is not None and self.propagation.propagate_all(self.state.layer)

    def cancel_propagation(self) -> None:
        self.propagation.cancel()

    def cancel_running(self) -> None:
        """The status bar's Cancel: the adaptation if one runs, else the propagation."""
        if self.adaptation.busy:
            self.adaptation.cancel()
        else:
            self.propagation.cancel()

    # -- the model --------------------------------------------------------------------------------
    def adapt_model(self) -> bool:
        return self.doc is not None and self.adaptation.adapt()

    def use_app_model(self) -> None:
        if self.doc is not None and self.doc.model_path() is not None:
            self.doc.set_model(None)
            self._on_model_changed(self.propagation.models.tag())

    def repropagate_outdated(self) -> bool:
        return self.doc is not None and self.propagation.repropagate_outdated(self.state.layer)

    def _on_model_changed(self, tag: str) -> None:
        self.timeline.set_current_model(tag)
        own = self.doc is not None and self.doc.model_path() is not None
        self.actions["model.use_app_model"].setEnabled(own)
        self.model_note.setText(f"model: {tag}" if own else self.model_note.text())

    def _on_adapt_started(self, budget: float) -> None:
        self.progress.setRange(0, max(1, int(budget * 10)))
        self.progress.setValue(0)
        self.progress.setFormat("adapting…")
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.actions["model.adapt"].setEnabled(False)
        self.message.setText(f"Adapting the model to this video ({budget:.0f} s)…")

    def _on_adapt_progress(self, step: int, loss: float, elapsed: float, budget: float) -> None:
        self.progress.setValue(min(self.progress.maximum(), int(elapsed * 10)))
        left = max(0.0, budget - elapsed)
        self.progress.setFormat(f"{left:.0f} s left")
        self.message.setText(f"Adapting the model to this video: step {step}, loss {loss:.3f}, {left:.0f} s left")

    def _on_adapt_ended(self, text: str) -> None:
        self.actions["model.adapt"].setEnabled(True)
        if not self.propagation.running:
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
        self.message.setText(text)

    def _on_propagation_started(self, text: str, total: int) -> None:
        self._follow_head = True
        self.propagation.auto_layer = self.state.layer
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.message.setText(f"{text}: {total} frames…")

    def _on_propagation_progress(self, done: int, total: int) -> None:
        self.progress.setValue(done)
        self.progress.setFormat(f"{done}/{total}")

    def _on_frame_applied(self, i: int) -> None:
        if self._follow_head and self.settings.get("propagation/follow"):
            self.state.set_frame(i)

    def _on_propagation_ended(self, text: str) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.message.setText(text)

    def _on_propagation_failed(self, title: str, text: str) -> None:
        self.propagation.cancel()
        self.errors.show(title, text)

    # -- session notifications ------------------------------------------------------------------
    def _on_session_changed(self, kind: str, frames) -> None:
        self.canvas.on_session_changed(kind, frames)
        if kind in ("label", "provenance", "keyframes"):
            self.timeline.mark_dirty()
        if kind == "keyframes" and self.inspector is not None:
            self.inspector.set_keyframes(self.doc.session.keyframes(self.state.layer))
        if kind == "objects":
            self.objects_panel.refresh()
        if kind == "schema" or (kind == "label" and self.state.frame in frames):
            self.keypoints_panel.refresh()

    def _update_title(self, _clean: bool = True) -> None:
        if self.doc is None:
            self.setWindowTitle(APP_NAME)
            return
        self.setWindowTitle(f"{self.doc.title}{' *' if self.doc.dirty else ''} — {APP_NAME}")

    # -- dialogs and docks ----------------------------------------------------------------------
    def shortcuts_dialog(self) -> None:
        ShortcutsDialog(self.actions, self.keymap, self).exec()

    def settings_dialog(self) -> None:
        dlg = SettingsDialog(self.settings, self)
        if dlg.exec():
            dlg.apply()
            self.timeline.set_low_confidence(self.settings.get("timeline/low_confidence"))
            self.auto_action.setChecked(self.settings.get("propagation/auto_repropagate"))
            self.autosaver.set_interval(self.settings.get("autosave/interval_s"))

    def schema_dialog(self) -> None:
        if self.doc is None:
            return
        dlg = SchemaDialog(self.doc.session.schema, self)
        if dlg.exec():
            try:
                self.doc.set_schema(dlg.schema())
            except AffinityError as exc:
                self.errors.show("Cannot use this keypoint schema", str(exc))
                return
            self.keypoints_panel.refresh()
            self.state.set_tool("keypoints")

    def toggle_inspector(self, on: bool) -> None:
        """View > Affinity inspector: the dock (annotator.inspector) on the propagation model; the
        Inspect tool's clicks on the canvas choose the pixel of frame A."""
        if self.inspector is None and on:
            try:
                from .inspector import InspectorDock
            except ImportError as exc:
                self.actions["view.inspector"].setChecked(False)
                self.errors.show("Inspector not available", f"annotator.inspector cannot be loaded ({exc})")
                return
            self.inspector = InspectorDock(self)
            self.addDockWidget(Qt.RightDockWidgetArea, self.inspector)
            self.inspector.visibilityChanged.connect(self.actions["view.inspector"].setChecked)
            self.inspector.failed.connect(self.message.setText)
            self.canvas.inspect_clicked.connect(self.inspector.inspect)
            self._attach_inspector()
        if self.inspector is not None:
            self.inspector.setVisible(on)
            if on:
                self.state.set_tool("inspect")

    def _attach_inspector(self) -> None:
        if self.inspector is None or self.doc is None:
            return
        try:
            propagator, note, _ = self.propagation.models()   # shares the propagator's feature cache
        except AffinityError as exc:
            self.errors.show("Cannot load the model for the inspector", str(exc))
            self.inspector.set_source(None, None)
            return
        if note:
            self.model_note.setText(note)
        self.inspector.set_source(self.doc.video, propagator)
        self.inspector.set_keyframes(self.doc.session.keyframes(self.state.layer))
        self.inspector.set_frame_a(self.state.frame)
