"""The objects dock: one row per object (number, colour, name, visible), add/remove/recolour.

Renames, colour changes, additions and deletions are undo commands; visibility is a view setting
(app state), not an edit of the labels.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QColorDialog, QHBoxLayout, QListWidget, QListWidgetItem, QMessageBox, QPushButton,
                               QVBoxLayout, QWidget)

from . import commands


def swatch(colour, size: int = 14) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(QColor(*colour))
    return QIcon(pm)


class ObjectsPanel(QWidget):
    error = Signal(str, str)

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.doc = None
        self._filling = False
        self.list = QListWidget()
        self.list.setToolTip("Number keys select objects; double-click a name to rename; "
                             "the check box shows or hides an object")
        self.add_button = QPushButton("Add")
        self.remove_button = QPushButton("Remove")
        self.colour_button = QPushButton("Colour…")
        buttons = QHBoxLayout()
        for b in (self.add_button, self.remove_button, self.colour_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self.add_button.clicked.connect(self.add_object)
        self.remove_button.clicked.connect(self.remove_selected)
        self.colour_button.clicked.connect(self.choose_colour)
        self.list.currentItemChanged.connect(self._on_current)
        self.list.itemChanged.connect(self._on_item_changed)
        state.object_changed.connect(self._select_row)
        state.visibility_changed.connect(self.refresh)

    def set_document(self, doc) -> None:
        self.doc = doc
        self.refresh()
        objects = doc.session.objects
        if self.state.object_id not in objects:
            self.state.set_object(next(iter(objects), 0))
        self._select_row(self.state.object_id)

    def refresh(self) -> None:
        if self.doc is None:
            return
        self._filling = True
        try:
            objects = self.doc.session.objects
            rows = [self.list.item(r).data(Qt.UserRole) for r in range(self.list.count())]
            if rows == list(objects):
                # Same objects: update the rows in place (a rename arrives while its row is being
                # edited; rebuilding would delete that item under Qt's feet).
                for r, (oid, info) in enumerate(objects.items()):
                    item = self.list.item(r)
                    item.setText(info["name"])
                    item.setIcon(swatch(info["colour"]))
                    item.setCheckState(Qt.Unchecked if oid in self.state.hidden else Qt.Checked)
                return
            self.list.clear()
            for oid, info in objects.items():
                item = QListWidgetItem(swatch(info["colour"]), info["name"])
                item.setData(Qt.UserRole, oid)
                item.setFlags(item.flags() | Qt.ItemIsEditable | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Unchecked if oid in self.state.hidden else Qt.Checked)
                item.setToolTip(f"object {oid}" + (f" (key {oid})" if oid <= 9 else ""))
                self.list.addItem(item)
            self._select_row(self.state.object_id)
        finally:
            self._filling = False

    def _select_row(self, oid: int) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.UserRole) == oid:
                if self.list.currentRow() != row:
                    self.list.setCurrentRow(row)
                return

    def _on_current(self, item, _previous) -> None:
        if item is not None and not self._filling:
            self.state.set_object(item.data(Qt.UserRole))

    def _on_item_changed(self, item) -> None:
        if self._filling or self.doc is None:
            return
        oid = item.data(Qt.UserRole)
        self.state.set_hidden(oid, item.checkState() != Qt.Checked)
        name = item.text().strip()
        if name and name != self.doc.session.objects.get(oid, {}).get("name"):
            commands.rename_object(self.doc, oid, name)

    # -- actions --------------------------------------------------------------------------------
    def add_object(self) -> int:
        if self.doc is None:
            return 0
        try:
            oid = commands.add_object(self.doc)
        except Exception as exc:   # all 255 ids used
            self.error.emit("Cannot add an object", str(exc))
            return 0
        self.refresh()
        self.state.set_object(oid)
        return oid

    def remove_selected(self, confirm: bool = True) -> None:
        oid = self.state.object_id
        if self.doc is None or oid not in self.doc.session.objects:
            return
        name = self.doc.session.objects[oid]["name"]
        if confirm and QMessageBox.question(
                self, "Remove object", f"Remove {name!r} from every frame? (Undo brings it back.)") \
                != QMessageBox.Yes:
            return
        commands.delete_object(self.doc, oid)
        self.refresh()
        remaining = list(self.doc.session.objects)
        self.state.set_object(remaining[0] if remaining else 0)

    def choose_colour(self) -> None:
        oid = self.state.object_id
        if self.doc is None or oid not in self.doc.session.objects:
            return
        current = QColor(*self.doc.session.objects[oid]["colour"])
        colour = QColorDialog.getColor(current, self, "Object colour")
        if colour.isValid():
            commands.recolour_object(self.doc, oid, (colour.red(), colour.green(), colour.blue()))

    def select_number(self, n: int) -> None:
        """Number key n: the n-th object in the list."""
        ids = list(self.doc.session.objects) if self.doc else []
        if 1 <= n <= len(ids):
            self.state.set_object(ids[n - 1])
