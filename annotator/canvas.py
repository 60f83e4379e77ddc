"""The frame view: the video frame, the mask overlay and the keypoints, zoom/pan, and the tools.

Scene coordinates are image pixels with pixel (0, 0) covering [0, 1) x [0, 1); label coordinates
(masks painted with OpenCV, keypoints) put pixel centres at integers, hence the 0.5 shifts.

A paint stroke edits a private copy of the frame's mask and redraws only the dirty rectangle of
the overlay; releasing the mouse commits the whole stroke as one undo command (`commands.py`),
which makes the frame a keyframe.  A keypoint drag works the same way.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (QBrush, QColor, QFont, QPainter, QPainterPath, QPen, QPixmap)
from PySide6.QtWidgets import (QGraphicsEllipseItem, QGraphicsItem, QGraphicsPathItem, QGraphicsPixmapItem,
                               QGraphicsScene, QGraphicsView)

from engine.errors import AffinityError
from engine.labels import Keypoints

from . import commands, tools
from .overlay import OverlayCache, colour_table
from .pixmaps import PixmapCache

PICK_RADIUS_PX = 9        # screen pixels within which a click grabs a keypoint
POINT_RADIUS_PX = 5
ZOOM_STEP = 1.25
STATUS_TEXT = {"user": "keyframe", "propagated": "propagated", "stale": "stale (re-propagate)", "empty": "no label"}


class OverlayItem(QGraphicsItem):
    """Draws a QImage (the mask overlay) at the image origin; repaints only exposed parts."""

    def __init__(self):
        super().__init__()
        self.overlay = None
        self._rect = QRectF()

    def set_overlay(self, overlay, size) -> None:
        self.prepareGeometryChange()
        self.overlay = overlay
        self._rect = QRectF(0, 0, *size)
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self.overlay is None:
            return
        r = option.exposedRect.toAlignedRect().intersected(self._rect.toAlignedRect())
        painter.drawImage(r, self.overlay.image, r)


class KeypointsItem(QGraphicsItem):
    """Points and skeleton of one frame, drawn with constant on-screen sizes."""

    def __init__(self):
        super().__init__()
        self.schema = None
        self.kp: "Keypoints | None" = None
        self.selected = -1
        self.faded = False
        self._rect = QRectF()
        self.setZValue(2)

    def set_points(self, schema, kp, selected: int, size, faded: bool = False) -> None:
        self.prepareGeometryChange()
        self.schema, self.kp, self.selected, self.faded = schema, kp, selected, faded
        self._rect = QRectF(-50, -50, size[0] + 100, size[1] + 100)
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self.schema is None or self.kp is None:
            return
        scale = max(1e-6, painter.worldTransform().m11())
        r = POINT_RADIUS_PX / scale
        painter.setRenderHint(QPainter.Antialiasing)
        xy, vis = self.kp.xy + 0.5, self.kp.visible
        alpha = 140 if self.faded else 255
        for a, b in self.schema.skeleton:
            if vis[a] and vis[b]:
                c = QColor(*self.schema.colours[a], alpha)
                pen = QPen(c, 2.0, Qt.SolidLine, Qt.RoundCap)
                pen.setCosmetic(True)
                painter.setPen(pen)
                painter.drawLine(QPointF(*xy[a]), QPointF(*xy[b]))
        font = QFont()
        font.setPointSizeF(max(1.0, 8.0 / scale))
        painter.setFont(font)
        for k in np.flatnonzero(vis):
            c = QColor(*self.schema.colours[k], alpha)
            pen = QPen(QColor(255, 255, 255, alpha) if k == self.selected else QColor(0, 0, 0, alpha),
                       2.5 if k == self.selected else 1.2)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.setBrush(QBrush(c))
            p = QPointF(*xy[k])
            rr = r * (1.5 if k == self.selected else 1.0)
            painter.drawEllipse(p, rr, rr)
            at = p + QPointF(rr * 1.3, -rr * 0.8)
            painter.setPen(QColor(0, 0, 0, alpha))          # a dark halo keeps names readable anywhere
            for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                painter.drawText(at + QPointF(dx / scale, dy / scale), self.schema.names[k])
            painter.setPen(QColor(255, 255, 255, alpha))
            painter.drawText(at, self.schema.names[k])


class CanvasView(QGraphicsView):
    status_message = Signal(str)
    error = Signal(str, str)          # title, text
    keypoint_picked = Signal(int)
    inspect_clicked = Signal(float, float)   # image pixel clicked with the inspector tool

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.doc = None
        self.frame_index = -1
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.MinimalViewportUpdate)
        self.setBackgroundBrush(QColor(30, 30, 32))
        self.setMouseTracking(True)
        # Pan with the middle button or the pan tool; scroll bars would only eat space.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setAcceptDrops(False)     # the main window takes dropped files
        self.frame_item = QGraphicsPixmapItem()
        self.frame_item.setTransformationMode(Qt.FastTransformation)
        self.overlay_item = OverlayItem()
        self.overlay_item.setZValue(1)
        self.keypoints_item = KeypointsItem()
        self.cursor_item = QGraphicsEllipseItem()
        pen = QPen(QColor(255, 255, 255), 1.0, Qt.DashLine)
        pen.setCosmetic(True)
        self.cursor_item.setPen(pen)
        self.cursor_item.setZValue(3)
        self.cursor_item.setVisible(False)
        self.polygon_item = QGraphicsPathItem()
        pen = QPen(QColor(255, 255, 0), 1.5)
        pen.setCosmetic(True)
        self.polygon_item.setPen(pen)
        self.polygon_item.setZValue(3)
        for item in (self.frame_item, self.overlay_item, self.keypoints_item, self.cursor_item, self.polygon_item):
            self.scene().addItem(item)
        self.overlays = OverlayCache()
        self._lut = np.zeros(256, np.uint32)
        self._style = 0
        self._size = (0, 0)
        self.pixmaps = PixmapCache()
        # Idle-time warming of the frames next to the one on screen, so that the next step of a
        # scrub finds its pixmap and overlay ready (one frame per idle tick keeps the loop free).
        self._warm_queue: list[int] = []
        self._warm_timer = QTimer(self)
        self._warm_timer.setInterval(0)
        self._warm_timer.timeout.connect(self._warm_next)
        self._frame_error = None
        self._stroke = None            # working mask of a paint stroke
        self._stroke_last = None
        self._drag_kp = None           # (index, working Keypoints) while dragging a keypoint
        self._polygon: list = []
        self._panning = None
        self._fit_pending = True
        state.tool_changed.connect(self._on_tool)
        state.brush_changed.connect(lambda _: self._update_cursor(None))
        state.opacity_changed.connect(lambda _: self.restyle())
        state.visibility_changed.connect(self.restyle)
        state.keypoint_changed.connect(lambda _: self.refresh_keypoints())

    # -- document and frames --------------------------------------------------------------------
    def set_document(self, doc) -> None:
        self.doc = doc
        self.overlays.clear()
        self._warm_queue.clear()
        self._size = tuple(doc.video.size)
        self.pixmaps.reset(self._size)
        self.scene().setSceneRect(QRectF(-0.25 * self._size[0], -0.25 * self._size[1],
                                         1.5 * self._size[0], 1.5 * self._size[1]))
        self.frame_index = -1
        self._cancel_edits()
        self.restyle()
        self._fit_pending = True
        self.show_frame(self.state.frame)

    def show_frame(self, i: int) -> None:
        """Put frame i on screen (decoded through the video's LRU cache) with its labels."""
        if self.doc is None:
            return
        step = 1 if i >= self.frame_index else -1
        if i != self.frame_index:
            self._cancel_edits()
        self.frame_index = i
        try:
            pixmap = self.pixmaps.get(i, self.doc.video.frame)
            self._frame_error = None
        except (AffinityError, OSError) as exc:
            pixmap = QPixmap(*self._size)
            pixmap.fill(Qt.black)
            self._frame_error = f"frame {i} cannot be decoded: {exc}"
            self.status_message.emit(self._frame_error)
        self.frame_item.setPixmap(pixmap)
        self.refresh_labels()
        if self._fit_pending:
            self.fit()
        self._schedule_warming(i, step)

    def _schedule_warming(self, i: int, step: int) -> None:
        n = len(self.doc.video)
        ahead = [i + step * d for d in (1, 2, 3, 4)] + [i - step, i - 2 * step]
        self._warm_queue = [j for j in ahead if 0 <= j < n]
        self._warm_timer.start()

    def pause_warming(self) -> None:
        self._warm_queue.clear()
        self._warm_timer.stop()

    def _warm_next(self) -> None:
        """Render one queued neighbour's pixmap and overlay if its pixels are already decoded
        (decoding is left to the frame request itself: it may seek)."""
        while self._warm_queue and self.doc is not None:
            j = self._warm_queue.pop(0)
            if j in self.pixmaps or not self.doc.video.is_cached(j):
                continue
            try:
                self.pixmaps.get(j, self.doc.video.frame)
                self._overlay_for(j)
            except (AffinityError, OSError, IndexError):
                continue
            return
        self._warm_timer.stop()

    def refresh_labels(self) -> None:
        self.refresh_mask()
        self.refresh_keypoints()
        self.viewport().update()

    def refresh_mask(self) -> None:
        if self.doc is None or self.frame_index < 0:
            return
        if self._stroke is not None:
            return    # the stroke's working copy is on screen until it is committed
        self.overlay_item.set_overlay(self._overlay_for(self.frame_index), self._size)

    def _overlay_for(self, i: int):
        """The (cached) overlay image of frame i's mask, faded when stale; None when nothing shows."""
        mask = self.doc.session.label(i) if self.state.overlay_visible else None
        if mask is None:
            return None
        lut = self._stale_lut if self.doc.session.provenance(i, "mask").kind == "stale" else self._lut
        return self.overlays.get(i, mask, lut, self._style)

    def refresh_keypoints(self) -> None:
        if self.doc is None or self.frame_index < 0:
            return
        s = self.doc.session
        kp = self._drag_kp[1] if self._drag_kp else (s.keypoints(self.frame_index) if s.schema else None)
        faded = s.schema is not None and s.provenance(self.frame_index, "keypoints").kind == "stale"
        self.keypoints_item.set_points(s.schema, kp if self.state.overlay_visible else None,
                                       self.state.keypoint, self._size, faded)

    def restyle(self) -> None:
        """Colours, opacity or visibility changed: rebuild the lookup tables and redraw."""
        if self.doc is None:
            return
        objects = self.doc.session.objects
        self._lut = colour_table(objects, self.state.opacity, self.state.hidden)
        self._stale_lut = colour_table(objects, self.state.opacity * 0.5, self.state.hidden)
        self._style += 1
        self.overlays.clear()
        self.refresh_labels()

    def on_session_changed(self, kind: str, frames) -> None:
        if kind == "objects":
            self.restyle()
        elif kind in ("label", "provenance", "schema") and (kind == "schema" or self.frame_index in frames):
            self.refresh_labels()

    # -- zoom and pan ---------------------------------------------------------------------------
    def fit(self) -> None:
        if self._size[0]:
            # Stays in fit mode (refit on resize) until the person zooms.
            self.fitInView(QRectF(0, 0, *self._size), Qt.KeepAspectRatio)
            self._fit_pending = True

    def zoom(self, factor: float, anchor_under_mouse: bool = False) -> None:
        self._fit_pending = False
        old = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse if anchor_under_mouse else QGraphicsView.AnchorViewCenter)
        scale = self.transform().m11()
        factor = max(0.05 / scale, min(64.0 / scale, factor))
        self.scale(factor, factor)
        self.setTransformationAnchor(old)

    def zoom_level(self) -> float:
        return self.transform().m11()

    def wheelEvent(self, event) -> None:
        if event.modifiers() & Qt.ShiftModifier and self.state.tool in ("brush", "eraser"):
            self.state.set_brush_size(self.state.brush_size + (2 if event.angleDelta().y() > 0 else -2))
            return
        self.zoom(ZOOM_STEP if event.angleDelta().y() > 0 else 1 / ZOOM_STEP, anchor_under_mouse=True)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit_pending:
            self.fit()

    # -- mouse ----------------------------------------------------------------------------------
    def _image_pos(self, event) -> tuple[float, float]:
        p = self.mapToScene(event.position().toPoint())
        return p.x() - 0.5, p.y() - 0.5

    def mousePressEvent(self, event) -> None:
        if self.doc is None:
            return
        if event.button() == Qt.MiddleButton or (event.button() == Qt.LeftButton and self.state.tool == "pan"):
            self._panning = event.position()
            self.viewport().setCursor(Qt.ClosedHandCursor)
            return
        pos = self._image_pos(event)
        tool = self.state.tool
        if tool in ("brush", "eraser") and event.button() == Qt.LeftButton:
            self._begin_stroke(pos, erase=tool == "eraser")
        elif tool == "fill" and event.button() == Qt.LeftButton:
            self._fill(pos)
        elif tool == "polygon":
            if event.button() == Qt.LeftButton:
                self._polygon.append(pos)
                self._update_polygon(pos)
            elif event.button() == Qt.RightButton:
                self.finish_polygon()
        elif tool == "inspect" and event.button() == Qt.LeftButton:
            self.inspect_clicked.emit(*pos)
        elif tool == "keypoints":
            if event.button() == Qt.LeftButton:
                self._keypoint_press(pos)
            elif event.button() == Qt.RightButton:
                k = self._pick_keypoint(pos)
                if k >= 0:
                    self.state.set_keypoint(k)
                    self.mark_keypoint_absent()

    def mouseMoveEvent(self, event) -> None:
        if self._panning is not None:
            d = event.position() - self._panning
            self._panning = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(d.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(d.y()))
            return
        if self.doc is None:
            return
        pos = self._image_pos(event)
        self._update_cursor(pos)
        if self._stroke is not None:
            self._continue_stroke(pos)
        elif self._drag_kp is not None:
            k, kp = self._drag_kp
            w, h = self._size
            kp.xy[k] = (min(max(pos[0], 0), w - 1), min(max(pos[1], 0), h - 1))
            kp.visible[k] = True
            self.refresh_keypoints()
        elif self._polygon:
            self._update_polygon(pos)
        if self._frame_error is None:
            x, y = int(round(pos[0])), int(round(pos[1]))
            if 0 <= x < self._size[0] and 0 <= y < self._size[1]:
                self.status_message.emit(f"x {x}, y {y}  zoom {self.zoom_level() * 100:.0f}%")

    def mouseReleaseEvent(self, event) -> None:
        if self._panning is not None:
            self._panning = None
            self._on_tool(self.state.tool)
            return
        if self._stroke is not None and event.button() == Qt.LeftButton:
            self._end_stroke()
        elif self._drag_kp is not None and event.button() == Qt.LeftButton:
            k, kp = self._drag_kp
            self._drag_kp = None
            self._commit_keypoints(kp, f"Place {self.doc.session.schema.names[k]}")

    def mouseDoubleClickEvent(self, event) -> None:
        if self.state.tool == "polygon" and len(self._polygon) >= 3:
            self.finish_polygon()
        else:
            super().mouseDoubleClickEvent(event)

    def leaveEvent(self, event) -> None:
        self.cursor_item.setVisible(False)
        super().leaveEvent(event)

    def keyPressEvent(self, event) -> None:
        if self.state.tool == "polygon" and event.key() in (Qt.Key_Return, Qt.Key_Enter):
            self.finish_polygon()
            return
        super().keyPressEvent(event)

    def _on_tool(self, tool: str) -> None:
        self._cancel_edits()
        cursors = {"pan": Qt.OpenHandCursor, "fill": Qt.PointingHandCursor, "keypoints": Qt.CrossCursor,
                   "polygon": Qt.CrossCursor, "inspect": Qt.WhatsThisCursor}
        self.viewport().setCursor(cursors.get(tool, Qt.BlankCursor if tool in ("brush", "eraser") else Qt.ArrowCursor))
        self.cursor_item.setVisible(False)

    def _update_cursor(self, pos) -> None:
        show = self.state.tool in ("brush", "eraser") and pos is not None
        self.cursor_item.setVisible(show)
        if show:
            r = self.state.brush_size / 2
            self.cursor_item.setRect(pos[0] + 0.5 - r, pos[1] + 0.5 - r, 2 * r, 2 * r)

    # -- painting -------------------------------------------------------------------------------
    def _target_object(self) -> int:
        oid = self.state.object_id
        if oid not in self.doc.session.objects:
            self.status_message.emit("Select or add an object first (N adds one)")
            return 0
        return oid

    def _working_mask(self) -> np.ndarray:
        m = self.doc.session.label(self.frame_index)
        h, w = self._size[1], self._size[0]
        return np.zeros((h, w), np.uint8) if m is None else np.array(m)

    def _begin_stroke(self, pos, erase: bool) -> None:
        oid = self._target_object()
        if not oid:
            return
        self._stroke = (self._working_mask(), oid, erase)
        self._stroke_overlay = None
        from .overlay import OverlayImage
        self._stroke_overlay = OverlayImage(self._stroke[0], self._lut)
        self.overlay_item.set_overlay(self._stroke_overlay, self._size)
        self._stroke_last = pos
        self._continue_stroke(pos)

    def _continue_stroke(self, pos) -> None:
        mask, oid, erase = self._stroke
        rect = tools.paint_segment(mask, self._stroke_last, pos, self.state.brush_size / 2, oid,
                                   self.state.paint_behind, erase)
        self._stroke_last = pos
        if rect is not None:
            self._stroke_overlay.update_rect(mask, self._lut, rect)
            x0, y0, x1, y1 = rect
            self.overlay_item.update(QRectF(x0, y0, x1 - x0, y1 - y0))

    def _end_stroke(self) -> None:
        mask, oid, erase = self._stroke
        self._stroke = None
        self._commit_mask(mask, "Erase" if erase else "Brush stroke")

    def _fill(self, pos) -> None:
        oid = self._target_object()
        if not oid:
            return
        mask = self._working_mask()
        if tools.flood_fill(mask, (round(pos[0]), round(pos[1])), oid, self.state.paint_behind) is not None:
            self._commit_mask(mask, "Fill")

    def _update_polygon(self, pos) -> None:
        path = QPainterPath()
        pts = [QPointF(x + 0.5, y + 0.5) for x, y in self._polygon + [pos]]
        path.moveTo(pts[0])
        for p in pts[1:]:
            path.lineTo(p)
        self.polygon_item.setPath(path)

    def finish_polygon(self) -> None:
        pts, self._polygon = self._polygon, []
        self.polygon_item.setPath(QPainterPath())
        oid = self._target_object() if len(pts) >= 3 else 0
        if oid:
            mask = self._working_mask()
            if tools.fill_polygon(mask, pts, oid, self.state.paint_behind) is not None:
                self._commit_mask(mask, "Polygon")

    def cancel_polygon(self) -> bool:
        had = bool(self._polygon)
        self._polygon = []
        self.polygon_item.setPath(QPainterPath())
        return had

    def _commit_mask(self, mask: np.ndarray, text: str) -> None:
        try:
            commands.set_mask(self.doc, self.frame_index, mask, text)
        except AffinityError as exc:
            self.error.emit("Cannot store the mask", str(exc))
        self.refresh_labels()

    def _cancel_edits(self) -> None:
        if self._stroke is not None or self._drag_kp is not None:
            self._stroke = None
            self._drag_kp = None
            QTimer.singleShot(0, self.refresh_labels)
        self.cancel_polygon()

    # -- keypoints ------------------------------------------------------------------------------
    def _current_keypoints(self) -> "Keypoints | None":
        s = self.doc.session
        if s.schema is None:
            return None
        kp = s.keypoints(self.frame_index)
        if kp is None:
            k = len(s.schema)
            kp = Keypoints(np.full((k, 2), np.nan, np.float32), np.zeros(k, bool))
        return kp

    def _pick_keypoint(self, pos) -> int:
        kp = self.doc.session.keypoints(self.frame_index) if self.doc.session.schema else None
        if kp is None or not kp.visible.any():
            return -1
        d = np.hypot(kp.xy[:, 0] - pos[0], kp.xy[:, 1] - pos[1])
        d[~kp.visible] = np.inf
        k = int(np.argmin(d))
        return k if d[k] * self.zoom_level() <= PICK_RADIUS_PX else -1

    def _keypoint_press(self, pos) -> None:
        kp = self._current_keypoints()
        if kp is None:
            self.status_message.emit("No keypoint schema: load one (Keypoints panel) or define it first")
            return
        k = self._pick_keypoint(pos)
        if k < 0:
            k = self.state.keypoint
            if not 0 <= k < len(kp.visible):
                hidden = np.flatnonzero(~kp.visible)
                k = int(hidden[0]) if len(hidden) else 0
            w, h = self._size
            if not (0 <= pos[0] < w and 0 <= pos[1] < h):
                return
            kp.xy[k] = pos
            kp.visible[k] = True
        self.state.set_keypoint(k)
        self.keypoint_picked.emit(k)
        self._drag_kp = (k, kp)
        self.refresh_keypoints()

    def _commit_keypoints(self, kp: Keypoints, text: str) -> None:
        try:
            changed = commands.set_keypoints(self.doc, self.frame_index, kp, text)
        except AffinityError as exc:
            self.error.emit("Cannot store the keypoints", str(exc))
            changed = False
        if changed:
            self._advance_keypoint(kp)
        self.refresh_keypoints()

    def _advance_keypoint(self, kp: Keypoints) -> None:
        """After placing a point, select the next one not yet placed on this frame (sequential labelling)."""
        k = self.state.keypoint
        n = len(kp.visible)
        for step in range(1, n + 1):
            j = (k + step) % n
            if not kp.visible[j]:
                self.state.set_keypoint(j)
                return

    def mark_keypoint_absent(self) -> None:
        """The selected keypoint is absent on this frame (occluded / outside); stays absent when propagated."""
        if self.doc is None:
            return
        kp = self._current_keypoints()
        k = self.state.keypoint
        if kp is None or not 0 <= k < len(kp.visible) or not kp.visible[k]:
            return
        kp.visible[k] = False
        kp.xy[k] = np.nan
        try:
            commands.set_keypoints(self.doc, self.frame_index, kp, f"Mark {self.doc.session.schema.names[k]} absent")
        except AffinityError as exc:
            self.error.emit("Cannot store the keypoints", str(exc))
        self.refresh_keypoints()

    # -- painting the view's own text -----------------------------------------------------------
    def drawForeground(self, painter: QPainter, rect) -> None:
        if self.doc is None or self.frame_index < 0:
            return
        s = self.doc.session
        layer = self.state.layer
        kind = s.provenance(self.frame_index, layer).kind if layer == "mask" or s.schema else "empty"
        conf = s.confidence(self.frame_index, layer)
        text = f"{self.frame_index} / {len(s) - 1}   {STATUS_TEXT[kind]}"
        if kind in ("propagated", "stale") and conf is not None:
            text += f"   confidence {conf:.2f}"
        painter.save()
        painter.resetTransform()
        font = QFont()
        font.setPointSize(10)
        painter.setFont(font)
        colour = {"user": QColor(255, 200, 40), "propagated": QColor(90, 200, 110), "stale": QColor(240, 120, 60),
                  "empty": QColor(170, 170, 170)}[kind]
        fm = painter.fontMetrics()
        box = QRectF(8, 8, fm.horizontalAdvance(text) + 16, fm.height() + 8)
        painter.fillRect(box, QColor(0, 0, 0, 160))
        painter.setPen(colour)
        painter.drawText(box, Qt.AlignCenter, text)
        if self._frame_error:
            painter.setPen(QColor(255, 90, 90))
            painter.drawText(QRectF(8, 40, self.viewport().width() - 16, 40), Qt.AlignLeft, self._frame_error)
        painter.restore()
