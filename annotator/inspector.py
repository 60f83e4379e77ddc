"""The affinity inspector dock: click a pixel of frame A, see where its affinity goes in frame B.

Wiring (main window)::

    dock = InspectorDock(parent)
    dock.set_source(video, propagator)        # or an Encoder / FeatureExtractor; None detaches
    dock.set_keyframes(session.keyframes())   # for the "nearest keyframe" choice of frame B
    dock.set_frame_a(state.frame)             # follow the current frame
    dock.inspect(x, y)                        # a click with the inspector tool (frame pixels)
    dock.result_ready -> (InspectResult)      # e.g. to draw the query point on the canvas

The user may also click in the dock's own frame-A view.  All computing (features, heat maps) runs on
a one-thread pool off the GUI thread; requests that arrive meanwhile (a dragged slider, a scrub)
are coalesced so only the latest one runs next and stale results are dropped.  Features of a frame
are computed once and cached by the engine's FeatureExtractor (shared with the Propagator when one
is given), so changing temperature/top-k/radius or clicking again on the same pair is instant.
Drawing is `engine.inspect`'s (the same pixels as the PNG export).
"""
from __future__ import annotations

import dataclasses
import itertools

import cv2
import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDockWidget, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QHeaderView, QLabel, QMessageBox, QPushButton,
                               QSizePolicy, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine import inspect as ei
from engine.errors import AffinityError

B_MODES = ("next frame", "previous frame", "nearest keyframe", "frame")


class ImageView(QWidget):
    """An RGB array drawn to fit (aspect kept); clicks are reported in image pixels."""
    clicked = Signal(float, float)

    def __init__(self, placeholder: str = "", parent=None):
        super().__init__(parent)
        self._img: "QImage | None" = None
        self._buf = None                 # keeps the array QImage points into alive
        self.placeholder = placeholder
        self.setMinimumSize(160, 100)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setCursor(Qt.CrossCursor)

    def sizeHint(self) -> QSize:
        return QSize(360, 220)

    def set_image(self, rgb: "np.ndarray | None") -> None:
        if rgb is None:
            self._img = self._buf = None
        else:
            self._buf = np.ascontiguousarray(rgb, np.uint8)
            h, w = self._buf.shape[:2]
            self._img = QImage(self._buf.data, w, h, 3 * w, QImage.Format_RGB888)
        self.update()

    def image_rect(self) -> QRectF:
        if self._img is None:
            return QRectF()
        w, h = self._img.width(), self._img.height()
        s = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * s) / 2, (self.height() - h * s) / 2, w * s, h * s)

    def to_image(self, pos: QPointF) -> "tuple[float, float] | None":
        r = self.image_rect()
        if self._img is None or not r.contains(pos):
            return None
        s = r.width() / self._img.width()
        return (pos.x() - r.x()) / s, (pos.y() - r.y()) / s

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(28, 28, 30))
        if self._img is None:
            p.setPen(QColor(150, 150, 150))
            p.drawText(self.rect(), Qt.AlignCenter | Qt.TextWordWrap, self.placeholder)
        else:
            p.setRenderHint(QPainter.SmoothPixmapTransform)
            p.drawImage(self.image_rect(), self._img)
        p.end()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            xy = self.to_image(event.position())
            if xy is not None:
                self.clicked.emit(*xy)
        super().mousePressEvent(event)


def _fit_scale(shape, target: tuple[int, int]) -> float:
    """Scale that fits a frame into the view's device pixels (never up): markers and text are
    then drawn at screen size instead of shrinking with a large frame."""
    h, w = shape[:2]
    return min(1.0, target[0] / w, target[1] / h)


def _resize(img: np.ndarray, s: float) -> np.ndarray:
    if s >= 1.0:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _render_b(frame_b: np.ndarray, r: ei.InspectResult, target: tuple[int, int]) -> np.ndarray:
    s = _fit_scale(frame_b.shape, target)
    small = _resize(frame_b, s)
    heat = cv2.resize(r.heat_full, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_LINEAR)
    matches = [dataclasses.replace(m, x=m.x * s, y=m.y * s) for m in r.matches]
    win = ei.window_px(r)
    return ei.render_heatmap(small, heat, matches, window_px=None if win is None else tuple(v * s for v in win))


class _Signals(QObject):
    done = Signal(int, object)
    failed = Signal(int, str)


class _Job(QRunnable):
    def __init__(self, seq: int, fn, signals: _Signals):
        super().__init__()
        self.seq, self.fn, self.signals = seq, fn, signals

    def run(self) -> None:
        try:
            out = self.fn()
        except AffinityError as exc:
            self.signals.failed.emit(self.seq, str(exc))
        except Exception as exc:   # a worker must never take the app down; show it instead
            self.signals.failed.emit(self.seq, f"{type(exc).__name__}: {exc}")
        else:
            self.signals.done.emit(self.seq, out)


class InspectorDock(QDockWidget):
    result_ready = Signal(object)     # engine.inspect.InspectResult
    busy_changed = Signal(bool)
    failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__("Affinity inspector", parent)
        self.setObjectName("InspectorDock")
        self._video = None
        self._inspector: "ei.Inspector | None" = None
        self._keyframes: list[int] = []
        self._a = 0
        self._point: "tuple[float, float] | None" = None
        self.last_result: "ei.InspectResult | None" = None
        self._frame_b_rgb = self._frame_a_rgb = None
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)    # one job at a time: jobs share the extractor and video
        self._signals = _Signals(self)
        self._signals.done.connect(self._on_done)
        self._signals.failed.connect(self._on_failed)
        self._seq = itertools.count(1)
        self._latest = 0                   # newest request; older results are dropped
        self._running = False
        self._pending = None               # (seq, fn) waiting for the running job
        self._build()

    # -- UI -----------------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget(self)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        self.view_a = ImageView("Open a video, then click a point here\n(or on the canvas with the inspector tool)")
        self.view_b = ImageView("The affinity of the clicked point\nover frame B appears here")
        self.title_a, self.title_b = QLabel("Frame A"), QLabel("Frame B")
        for t in (self.title_a, self.title_b):
            t.setStyleSheet("font-weight: bold")
        self.view_a.clicked.connect(self.inspect)
        lay.addWidget(self.title_a)
        lay.addWidget(self.view_a, 1)
        lay.addWidget(self.title_b)
        lay.addWidget(self.view_b, 1)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        row = QHBoxLayout()
        self.b_mode = QComboBox()
        self.b_mode.addItems(list(B_MODES))
        self.b_mode.setToolTip("Which frame the point is matched against")
        self.b_spin = QSpinBox()
        self.b_spin.setRange(0, 0)
        self.b_spin.setEnabled(False)
        row.addWidget(self.b_mode, 1)
        row.addWidget(self.b_spin)
        form.addRow("Frame B", row)
        self.temperature = QDoubleSpinBox()
        self.temperature.setDecimals(3)
        self.temperature.setRange(0.001, 5.0)
        self.temperature.setSingleStep(0.01)
        self.temperature.setValue(0.05)
        self.temperature.setToolTip("Softmax temperature: lower = sharper (CRW default 0.05)")
        self.topk = QSpinBox()
        self.topk.setRange(1, 100)
        self.topk.setValue(10)
        self.topk.setToolTip("How many best matches are marked (the propagator mixes this many)")
        self.radius = QDoubleSpinBox()
        self.radius.setDecimals(1)
        self.radius.setRange(0, 500)
        self.radius.setSingleStep(1)
        self.radius.setValue(0)
        self.radius.setSpecialValueText("global")
        self.radius.setSuffix(" cells")
        self.radius.setToolTip("Search window in feature cells (the propagator's short-term radius, default 12); "
                               "0 = global, as for the keyframe")
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-k", self.topk)
        form.addRow("Radius", self.radius)
        lay.addLayout(form)

        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["#", "x", "y", "cosine", "weight"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMaximumHeight(130)
        lay.addWidget(self.table)

        bottom = QHBoxLayout()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.export_button = QPushButton("Export PNG…")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._export_dialog)
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.export_button)
        lay.addLayout(bottom)
        self.setWidget(body)

        self.b_mode.currentIndexChanged.connect(self._on_b_mode)
        self.b_spin.valueChanged.connect(self._refresh)
        self.temperature.valueChanged.connect(self._refresh)
        self.topk.valueChanged.connect(self._refresh)
        self.radius.valueChanged.connect(self._refresh)

    # -- public API ---------------------------------------------------------------------------------
    def set_source(self, video, source) -> None:
        """Attach to a video and a model (Propagator, Encoder or FeatureExtractor); None detaches."""
        self._video = video
        self._inspector = None if source is None or video is None else ei.Inspector(source)
        self._point, self.last_result = None, None
        n = len(video) if video is not None else 1
        self.b_spin.setRange(0, max(0, n - 1))
        self._a = min(self._a, n - 1)
        self.view_b.set_image(None)
        self.table.setRowCount(0)
        self.export_button.setEnabled(False)
        self._show_a()

    def set_keyframes(self, keyframes) -> None:
        self._keyframes = sorted(int(k) for k in keyframes)
        if self.b_mode.currentText() == "nearest keyframe":
            self._refresh()

    def set_frame_a(self, index: int) -> None:
        if self._video is None or index == self._a:
            return
        self._a = max(0, min(int(index), len(self._video) - 1))
        self._show_a()
        self._refresh()

    def frame_a(self) -> int:
        return self._a

    def frame_b(self) -> int:
        n = len(self._video) if self._video is not None else 1
        a, mode = self._a, self.b_mode.currentText()
        if mode == "frame":
            return self.b_spin.value()
        if mode == "nearest keyframe":
            others = [k for k in self._keyframes if k != a and 0 <= k < n]
            if others:
                return min(others, key=lambda k: (abs(k - a), k))
        if mode == "previous frame":
            return a - 1 if a > 0 else min(1, n - 1)
        return a + 1 if a + 1 < n else max(0, a - 1)    # next frame (the last frame looks back)

    def params(self) -> ei.InspectParams:
        base = self._inspector.params if self._inspector is not None else ei.InspectParams()
        r = self.radius.value()
        return ei.InspectParams(temperature=self.temperature.value(), topk=self.topk.value(),
                                radius=r if r > 0 else None, scale=base.scale, max_side=base.max_side)

    @property
    def busy(self) -> bool:
        return self._running

    def inspect(self, x: float, y: float) -> None:
        """Show the affinity of frame A's pixel (x, y) (frame pixels) over frame B."""
        if self._video is None or self._inspector is None:
            self.status.setText("No video or model attached.")
            return
        w, h = self._video.size
        self._point = (min(max(float(x), 0.0), w - 1e-3), min(max(float(y), 0.0), h - 1e-3))
        self._refresh()

    def export_png(self, path) -> None:
        """Write the current figure (A with the query | B with heat and matches), atomically."""
        r = self.last_result
        if r is None:
            raise AffinityError(path, "nothing to export yet: click a point first")
        figure = ei.render_pair(self._video.frame(r.a), self._frame_b_rgb, r)
        try:
            ei.save_png(path, figure)
        except OSError as exc:
            raise AffinityError(path, f"cannot write the PNG ({exc.strerror or exc})") from None

    # -- computing ------------------------------------------------------------------------------------
    def _on_b_mode(self) -> None:
        self.b_spin.setEnabled(self.b_mode.currentText() == "frame")
        if self.b_mode.currentText() == "frame":
            self.b_spin.blockSignals(True)
            self.b_spin.setValue(self.frame_b())
            self.b_spin.blockSignals(False)
        self._refresh()

    def _refresh(self, *_):
        if self._point is None or self._inspector is None:
            return
        if self.parent() is not None and not self.isVisible():
            return    # docked but hidden: no work while scrubbing; showEvent catches up
        inspector, video = self._inspector, self._video
        a, b, (x, y), params = self._a, self.frame_b(), self._point, self.params()

        target = self._target_size(self.view_b)

        def job():
            result = inspector.inspect(video, a, b, x, y, params)
            frame_b = video.frame(b)
            return result, frame_b, _render_b(frame_b, result, target)
        seq = next(self._seq)
        self._latest = seq
        cold = not (inspector.has_features(video, a, params) and inspector.has_features(video, b, params))
        self.status.setText("computing features…" if cold else "computing…")
        self._show_a()
        if self._running:
            self._pending = (seq, job)       # replaces an older pending request
        else:
            self._start(seq, job)

    def _start(self, seq, fn) -> None:
        self._running = True
        self.busy_changed.emit(True)
        self._pool.start(_Job(seq, fn, self._signals))

    def _next(self) -> None:
        self._running = False
        if self._pending is not None:
            seq, fn = self._pending
            self._pending = None
            self._start(seq, fn)
        else:
            self.busy_changed.emit(False)

    def _on_done(self, seq: int, out) -> None:
        self._next()
        if seq != self._latest:
            return                     # a newer request is queued or running
        result, frame_b, image = out
        self.last_result, self._frame_b_rgb = result, frame_b
        self.view_b.set_image(image)
        self._show_a()
        self._fill_table(result)
        p = result.params
        self.title_b.setText(f"Frame B = {result.b}   (T {p.temperature:g}, top-{p.topk}, "
                             f"{'global' if p.window is None else f'radius {p.window:g}'})")
        best = result.matches[0] if result.matches else None
        t = result.timings
        feats = "features cached" if result.cached else f"features {t['features_ms']:.0f} ms"
        self.status.setText(f"cell {result.cell}; best ({best.x:.0f}, {best.y:.0f}) weight {best.weight:.2f}; "
                            f"{feats}, affinity {t['affinity_ms']:.0f} ms" if best else "no cell in the window")
        self.export_button.setEnabled(True)
        self.result_ready.emit(result)

    def _on_failed(self, seq: int, message: str) -> None:
        self._next()
        if seq == self._latest:
            self.status.setText(f"error: {message}")
            self.failed.emit(message)

    # -- display -------------------------------------------------------------------------------------
    def _show_a(self) -> None:
        if self._video is None:
            self.view_a.set_image(None)
            return
        frame = self._video.frame(self._a)
        s = _fit_scale(frame.shape, self._target_size(self.view_a))
        frame = _resize(frame, s)
        r = self.last_result
        if self._point is not None:
            box = r.cell_box if r is not None and r.point == self._point and r.a == self._a else None
            frame = ei.render_query(frame, (self._point[0] * s, self._point[1] * s),
                                    cell_box=None if box is None else tuple(v * s for v in box))
        self.view_a.set_image(frame)
        self.title_a.setText(f"Frame A = {self._a}" + ("" if self._point is None else
                                                       f"   point ({self._point[0]:.0f}, {self._point[1]:.0f})"))

    @staticmethod
    def _target_size(view: ImageView) -> tuple[int, int]:
        dpr = view.devicePixelRatioF()
        return max(1, int(view.width() * dpr)), max(1, int(view.height() * dpr))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._video is not None:
            self._show_a()
        r = self.last_result
        if r is not None and self._frame_b_rgb is not None:
            self.view_b.set_image(_render_b(self._frame_b_rgb, r, self._target_size(self.view_b)))

    def _fill_table(self, r: ei.InspectResult) -> None:
        self.table.setRowCount(len(r.matches))
        for row, m in enumerate(r.matches):
            for col, v in enumerate((m.rank, f"{m.x:.0f}", f"{m.y:.0f}", f"{m.score:.3f}", f"{m.weight:.3f}")):
                item = QTableWidgetItem(str(v))
                item.setTextAlignment(Qt.AlignCenter)
                self.table.setItem(row, col, item)

    def _export_dialog(self) -> None:
        r = self.last_result
        if r is None:
            return
        name = f"affinity_a{r.a:05d}_b{r.b:05d}_x{r.point[0]:.0f}_y{r.point[1]:.0f}.png"
        path, _ = QFileDialog.getSaveFileName(self, "Export heat map", name, "PNG image (*.png)")
        if not path:
            return
        try:
            self.export_png(path)
            self.status.setText(f"wrote {path}")
        except AffinityError as exc:
            QMessageBox.warning(self, "Export failed", str(exc))

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.last_result is None or (self.last_result.a, self.last_result.b) != (self._a, self.frame_b()):
            self._refresh()

    def closeEvent(self, event) -> None:
        self._pending = None
        self._pool.waitForDone(2000)   # a running job holds the extractor; let it finish
        super().closeEvent(event)


__all__ = ["InspectorDock", "ImageView", "B_MODES"]
