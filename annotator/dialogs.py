"""Dialogs: errors (file + reason), shortcuts, settings, keypoint schema definition.

Error dialogs are non-modal by default in tests (`ErrorReporter.record_only`), so a test can
check what a person would have been told without a dialog blocking the event loop.
"""
from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMessageBox,
                               QPlainTextEdit, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)


class ErrorReporter(QObject):
    """Shows what went wrong in a dialog that names the file and the reason; the work survives."""

    def __init__(self, parent_widget):
        super().__init__(parent_widget)
        self.parent_widget = parent_widget
        self.record_only = False
        self.history: list[tuple[str, str]] = []

    def show(self, title: str, text: str) -> None:
        self.history.append((title, text))
        if self.record_only:
            return
        box = QMessageBox(QMessageBox.Warning, title, text, QMessageBox.Ok, self.parent_widget)
        box.setTextInteractionFlags(box.textInteractionFlags())
        box.exec()


class ShortcutsDialog(QDialog):
    def __init__(self, actions, keymap, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(560, 620)
        table = QTableWidget(len(actions), 3)
        table.setHorizontalHeaderLabels(["Action", "Keys", "Id"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.NoEditTriggers)
        for row, (aid, action) in enumerate(sorted(actions.items())):
            keys = ", ".join(s.toString() for s in action.shortcuts())
            for col, text in enumerate((action.text().replace("&", ""), keys or "—", aid)):
                table.setItem(row, col, QTableWidgetItem(text))
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        table.resizeColumnsToContents()
        note = QLabel(f"Override any shortcut in <code>{keymap.user_path}</code> "
                      "(same format as resources/keymap.json; an empty list removes one)."
                      + ("<br><b>Problems:</b> " + "; ".join(keymap.problems) if keymap.problems else ""))
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.table = table


class SettingsDialog(QDialog):
    """Model, device and propagation defaults (stored with QSettings)."""

    def __init__(self, settings, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("Settings")
        g = settings.get
        self.checkpoint = QLineEdit(g("model/checkpoint"))
        self.checkpoint.setPlaceholderText("bundled default model")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.checkpoint)
        row.addWidget(browse)
        ckpt = QWidget()
        ckpt.setLayout(row)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setCurrentText(g("model/device"))
        self.scale = QDoubleSpinBox()
        self.scale.setRange(0.0, 1.0)
        self.scale.setSingleStep(0.05)
        self.scale.setSpecialValueText("auto (1.0 on CUDA, 0.5 on CPU)")
        self.scale.setValue(g("propagation/scale"))
        model_default = "the model's protocol"
        self.topk = QSpinBox()
        self.topk.setRange(0, 100)
        self.topk.setSpecialValueText(model_default)
        self.topk.setValue(g("propagation/topk"))
        self.context = QSpinBox()
        self.context.setRange(-1, 100)
        self.context.setSpecialValueText(model_default)
        self.context.setValue(g("propagation/context"))
        self.radius = QDoubleSpinBox()
        self.radius.setRange(0, 100)
        self.radius.setSpecialValueText(model_default)
        self.radius.setValue(g("propagation/radius"))
        self.temperature = QDoubleSpinBox()
        self.temperature.setDecimals(3)
        self.temperature.setRange(0, 10)
        self.temperature.setSpecialValueText(model_default)
        self.temperature.setValue(g("propagation/temperature"))
        self.extent = QComboBox()
        self.extent.addItems(["next_keyframe", "end"])
        self.extent.setCurrentText(g("propagation/extent"))
        self.auto = QCheckBox("Re-propagate automatically after a correction")
        self.auto.setChecked(g("propagation/auto_repropagate"))
        self.follow = QCheckBox("Canvas follows the frame being propagated")
        self.follow.setChecked(g("propagation/follow"))
        self.low = QDoubleSpinBox()
        self.low.setRange(0, 1)
        self.low.setSingleStep(0.05)
        self.low.setValue(g("timeline/low_confidence"))
        self.autosave = QSpinBox()
        self.autosave.setRange(5, 3600)
        self.autosave.setSuffix(" s")
        self.autosave.setValue(g("autosave/interval_s"))
        form = QFormLayout(self)
        form.addRow("Checkpoint", ckpt)
        form.addRow("Device", self.device)
        form.addRow("Processing scale", self.scale)
        form.addRow("Top-k", self.topk)
        form.addRow("Context frames", self.context)
        form.addRow("Radius (cells)", self.radius)
        form.addRow("Temperature", self.temperature)
        form.addRow("Propagate to", self.extent)
        form.addRow(self.auto)
        form.addRow(self.follow)
        form.addRow("Low confidence below", self.low)
        form.addRow("Autosave every", self.autosave)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints (*.pt *.pth *.tar);;All files (*)")
        if path:
            self.checkpoint.setText(path)

    def apply(self) -> None:
        s = self.settings.set
        s("model/checkpoint", self.checkpoint.text().strip())
        s("model/device", self.device.currentText())
        s("propagation/scale", self.scale.value())
        s("propagation/topk", self.topk.value())
        s("propagation/context", self.context.value())
        s("propagation/radius", self.radius.value())
        s("propagation/temperature", self.temperature.value())
        s("propagation/extent", self.extent.currentText())
        s("propagation/auto_repropagate", self.auto.isChecked())
        s("propagation/follow", self.follow.isChecked())
        s("timeline/low_confidence", self.low.value())
        s("autosave/interval_s", self.autosave.value())


class SchemaDialog(QDialog):
    """Define keypoints in the app: names one per line, skeleton as a-b pairs."""

    def __init__(self, schema=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keypoint schema")
        self.names = QPlainTextEdit("\n".join(schema.names) if schema else "")
        self.names.setPlaceholderText("nose\nleft_ear\nright_ear")
        self.skeleton = QLineEdit(" ".join(f"{schema.names[a]}-{schema.names[b]}" for a, b in schema.skeleton)
                                  if schema else "")
        self.skeleton.setPlaceholderText("nose-left_ear nose-right_ear")
        form = QFormLayout(self)
        form.addRow("Names (one per line)", self.names)
        form.addRow("Skeleton edges", self.skeleton)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def schema(self):
        from .keypoints_panel import schema_from_text
        return schema_from_text(self.names.toPlainText(), self.skeleton.text())
