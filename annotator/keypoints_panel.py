"""The keypoints dock: the schema's points (colour, name, placed/absent on this frame), the
selected point that the next click places, and loading or defining a schema."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

from engine.errors import AffinityError, LabelError
from engine.labels import KeypointSchema

from .objects_panel import swatch


def read_schema(path) -> KeypointSchema:
    """A keypoint schema from JSON or YAML: {"names": [...], "skeleton": [[i, j] | [name, name]],
    "colours": [[r, g, b], ...]} (a keypoint file with "points" also works: its schema is used)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            doc = yaml.safe_load(text)
        else:
            import json
            doc = json.loads(text)
    except Exception as exc:   # json and yaml raise their own error types
        raise LabelError(path, f"is not valid {path.suffix.lstrip('.').upper() or 'JSON'} ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("names"), list) or not doc["names"]:
        raise LabelError(path, "a keypoint schema needs a non-empty list 'names'")
    names = [str(n) for n in doc["names"]]
    try:
        edges = []
        for a, b in doc.get("skeleton") or []:
            edges.append((names.index(a) if isinstance(a, str) else int(a),
                          names.index(b) if isinstance(b, str) else int(b)))
        colours = [tuple(int(c) for c in col) for col in doc.get("colours") or []]
        if colours and len(colours) != len(names):
            raise ValueError(f"{len(colours)} colours for {len(names)} names")
        return KeypointSchema(names, colours, edges)
    except LabelError as exc:
        raise LabelError(path, exc.reason) from None
    except (TypeError, ValueError) as exc:
        raise LabelError(path, f"malformed schema ({exc})") from None


def schema_from_text(names_text: str, skeleton_text: str) -> KeypointSchema:
    """The in-app definition: one name per line; edges as "a-b" pairs (names or 0-based numbers)."""
    names = [n.strip() for n in names_text.splitlines() if n.strip()]
    if not names:
        raise LabelError(None, "give at least one keypoint name")
    edges = []
    for token in skeleton_text.replace(",", " ").split():
        a, sep, b = token.partition("-")
        if not sep:
            raise LabelError(None, f"skeleton edge {token!r} must look like a-b")
        try:
            edges.append(tuple(int(x) if x.isdigit() else names.index(x) for x in (a, b)))
        except ValueError:
            raise LabelError(None, f"skeleton edge {token!r} names an unknown keypoint") from None
    return KeypointSchema(names, [], edges)


class KeypointsPanel(QWidget):
    error = Signal(str, str)
    schema_requested = Signal()      # "Define…": the main window opens the schema dialog

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.doc = None
        self.list = QListWidget()
        self.list.setToolTip("Select a point, then click on the frame to place it (drag to move it; "
                             "A or right-click marks it absent; Tab selects the next point)")
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.load_button = QPushButton("Load schema…")
        self.define_button = QPushButton("Define…")
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.define_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        layout.addWidget(self.hint)
        layout.addLayout(buttons)
        self.load_button.clicked.connect(self.load_schema_dialog)
        self.define_button.clicked.connect(self.schema_requested.emit)
        self.list.currentRowChanged.connect(self._on_row)
        state.keypoint_changed.connect(self._select_row)
        state.frame_changed.connect(lambda _: self.refresh())

    def set_document(self, doc) -> None:
        self.doc = doc
        self.refresh()

    def refresh(self) -> None:
        if self.doc is None:
            return
        s = self.doc.session
        self.list.blockSignals(True)
        self.list.clear()
        if s.schema is None:
            self.hint.setText("No keypoint schema. Load one (JSON or YAML) or define the points here.")
        else:
            kp = s.keypoints(self.state.frame)
            for k, name in enumerate(s.schema.names):
                placed = kp is not None and bool(kp.visible[k])
                mark = "" if placed else ("  (absent)" if kp is not None else "")
                item = QListWidgetItem(swatch(s.schema.colours[k]), f"{name}{mark}")
                if not placed:
                    item.setForeground(Qt.gray)     # not on this frame (yet)
                self.list.addItem(item)
            edges = ", ".join(f"{s.schema.names[a]}-{s.schema.names[b]}" for a, b in s.schema.skeleton)
            self.hint.setText(f"Skeleton: {edges or 'none'}")
            if not 0 <= self.state.keypoint < len(s.schema):
                self.state.set_keypoint(0)
        self.list.blockSignals(False)
        self._select_row(self.state.keypoint)

    def _select_row(self, k: int) -> None:
        if 0 <= k < self.list.count() and self.list.currentRow() != k:
            self.list.blockSignals(True)
            self.list.setCurrentRow(k)
            self.list.blockSignals(False)

    def _on_row(self, row: int) -> None:
        if row >= 0:
            self.state.set_keypoint(row)

    def select_next(self) -> None:
        if self.doc is not None and self.doc.session.schema is not None:
            self.state.set_keypoint((self.state.keypoint + 1) % len(self.doc.session.schema))

    def load_schema_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load keypoint schema", "",
                                              "Keypoint schema (*.json *.yaml *.yml);;All files (*)")
        if path:
            self.load_schema(path)

    def load_schema(self, path) -> bool:
        try:
            self.doc.set_schema(read_schema(path))
        except AffinityError as exc:
            self.error.emit("Cannot use this keypoint schema", str(exc))
            return False
        self.state.set_keypoint(0)
        self.refresh()
        return True
