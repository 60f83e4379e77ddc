"""The app's observable state, separate from the widgets (SLEAP's GuiState idea).

Widgets read and write these properties; everything that depends on a value connects to its
signal instead of asking another widget.  Setting a value to what it already is emits nothing,
so two widgets bound to the same value cannot ping-pong.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal

TOOLS = ("brush", "eraser", "fill", "polygon", "keypoints", "pan", "inspect")
LAYER_OF_TOOL = {"brush": "mask", "eraser": "mask", "fill": "mask", "polygon": "mask", "keypoints": "keypoints"}


class AppState(QObject):
    frame_changed = Signal(int)
    object_changed = Signal(int)         # selected object id (0 = none)
    tool_changed = Signal(str)
    layer_changed = Signal(str)          # "mask" | "keypoints": what the timeline shows and propagation runs
    brush_changed = Signal(int)
    paint_behind_changed = Signal(bool)
    opacity_changed = Signal(float)
    visibility_changed = Signal()        # hidden objects or the overlay as a whole
    keypoint_changed = Signal(int)       # selected keypoint index (-1 = none)

    MIN_BRUSH, MAX_BRUSH = 1, 400

    def __init__(self):
        super().__init__()
        self._frame = 0
        self._object = 0
        self._tool = "brush"
        self._layer = "mask"
        self._brush = 20
        self._behind = False
        self._opacity = 0.5
        self._hidden: set[int] = set()
        self._overlay = True
        self._keypoint = -1

    # frame
    @property
    def frame(self) -> int:
        return self._frame

    def set_frame(self, i: int) -> None:
        if i != self._frame:
            self._frame = int(i)
            self.frame_changed.emit(self._frame)

    # object
    @property
    def object_id(self) -> int:
        return self._object

    def set_object(self, oid: int) -> None:
        if oid != self._object:
            self._object = int(oid)
            self.object_changed.emit(self._object)

    # tool and layer
    @property
    def tool(self) -> str:
        return self._tool

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(tool)
        if tool != self._tool:
            self._tool = tool
            self.tool_changed.emit(tool)
        if tool in LAYER_OF_TOOL:
            self.set_layer(LAYER_OF_TOOL[tool])

    @property
    def layer(self) -> str:
        return self._layer

    def set_layer(self, layer: str) -> None:
        if layer != self._layer:
            self._layer = layer
            self.layer_changed.emit(layer)

    # brush
    @property
    def brush_size(self) -> int:
        return self._brush

    def set_brush_size(self, size: int) -> None:
        size = max(self.MIN_BRUSH, min(self.MAX_BRUSH, int(size)))
        if size != self._brush:
            self._brush = size
            self.brush_changed.emit(size)

    @property
    def paint_behind(self) -> bool:
        return self._behind

    def set_paint_behind(self, behind: bool) -> None:
        if bool(behind) != self._behind:
            self._behind = bool(behind)
            self.paint_behind_changed.emit(self._behind)

    # display
    @property
    def opacity(self) -> float:
        return self._opacity

    def set_opacity(self, value: float) -> None:
        value = max(0.0, min(1.0, float(value)))
        if abs(value - self._opacity) > 1e-6:
            self._opacity = value
            self.opacity_changed.emit(value)

    @property
    def hidden(self) -> frozenset:
        return frozenset(self._hidden)

    def set_hidden(self, oid: int, hidden: bool) -> None:
        if hidden != (oid in self._hidden):
            (self._hidden.add if hidden else self._hidden.discard)(oid)
            self.visibility_changed.emit()

    @property
    def overlay_visible(self) -> bool:
        return self._overlay

    def set_overlay_visible(self, visible: bool) -> None:
        if bool(visible) != self._overlay:
            self._overlay = bool(visible)
            self.visibility_changed.emit()

    # keypoints
    @property
    def keypoint(self) -> int:
        return self._keypoint

    def set_keypoint(self, k: int) -> None:
        if k != self._keypoint:
            self._keypoint = int(k)
            self.keypoint_changed.emit(self._keypoint)
