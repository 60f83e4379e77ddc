"""The timeline (pyqtgraph): per-frame status strip, confidence curve, keyframe marks, scrubbing.

Every frame gets one column of the strip coloured by its provenance (keyframe, propagated, stale,
empty) and a point of the confidence curve.  Click or drag anywhere on it to scrub; the wheel
zooms the frame axis (long videos), the middle button pans it.  Updates from a running
propagation arrive per frame; they only mark the timeline dirty, and one redraw happens per
`REDRAW_MS` at most, so the event loop never spends its time re-drawing a 10,000-frame plot.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

STATUS_RGBA = np.array([
    (70, 70, 74, 255),       # empty
    (255, 196, 40, 255),     # user keyframe
    (80, 190, 100, 255),     # propagated
    (235, 110, 50, 255),     # stale
], np.uint8)
OLDER_MODEL_RGBA = np.array([(0, 0, 0, 0), (175, 110, 235, 255)], np.uint8)
CURVE_COLOUR = (120, 180, 255)
REDRAW_MS = 40
STRIP = (-0.32, 0.2)         # y and height of the status strip under the curve
MODEL_STRIP = (-0.42, 0.08)  # under it: frames made by another model than the one in use


class ScrubViewBox(pg.ViewBox):
    """Left click/drag scrubs (reports x); wheel zooms x; middle drag pans."""
    scrubbed = Signal(float)

    def mouseClickEvent(self, ev):
        if ev.button() == pg.QtCore.Qt.LeftButton:
            ev.accept()
            self.scrubbed.emit(self.mapSceneToView(ev.scenePos()).x())
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == pg.QtCore.Qt.LeftButton:
            ev.accept()
            self.scrubbed.emit(self.mapSceneToView(ev.scenePos()).x())
        else:
            super().mouseDragEvent(ev, axis)


class TimelineWidget(QWidget):
    frame_requested = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.n = 0
        self.layer = "mask"
        self.session = None
        self.low_confidence = 0.5
        self.view = ScrubViewBox()
        self.view.setMouseEnabled(x=True, y=False)
        self.view.setMenuEnabled(False)
        self.plot = pg.PlotWidget(viewBox=self.view, background=(28, 28, 30))
        self.plot.setMinimumHeight(90)
        self.plot.hideButtons()
        self.plot.getAxis("left").setTicks([[(0, "0"), (0.5, ".5"), (1, "1")]])
        self.plot.getAxis("left").setWidth(28)
        self.plot.setYRange(MODEL_STRIP[0] - 0.02, 1.05, padding=0)
        self.strip = pg.ImageItem(axisOrder="col-major")
        self.model_strip = pg.ImageItem(axisOrder="col-major")
        self.current_model: "str | None" = None
        self.curve = pg.PlotDataItem(pen=pg.mkPen(CURVE_COLOUR, width=1.5), connect="finite")
        self.keymarks = pg.ScatterPlotItem(symbol="t", size=9, brush=pg.mkBrush(*STATUS_RGBA[1][:3]),
                                           pen=pg.mkPen(0, 0, 0))
        self.threshold = pg.InfiniteLine(pos=self.low_confidence, angle=0,
                                         pen=pg.mkPen((200, 200, 200, 90), style=pg.QtCore.Qt.DashLine))
        self.cursor = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen((255, 255, 255), width=1.5))
        for item in (self.strip, self.model_strip, self.curve, self.threshold, self.keymarks, self.cursor):
            self.plot.addItem(item)
        self.view.scrubbed.connect(self._on_scrub)
        legend = QLabel(self._legend_html())
        legend.setStyleSheet("color: #bbb; font-size: 11px;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.plot)
        layout.addWidget(legend)
        self._status = np.zeros(0, np.int8)
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self.redraw)
        self.redraws = 0

    @staticmethod
    def _legend_html() -> str:
        names = ("empty", "keyframe", "propagated", "stale")
        parts = [f'<span style="color: rgb{tuple(int(c) for c in STATUS_RGBA[i][:3])}">&#9632;</span> {n}'
                 for i, n in enumerate(names)]
        parts.append(f'<span style="color: rgb{CURVE_COLOUR}">&#9472;</span> confidence')
        parts.append(f'<span style="color: rgb{tuple(int(c) for c in OLDER_MODEL_RGBA[1][:3])}">&#9644;</span> '
                     'made by an earlier model')
        return "&nbsp;&nbsp;".join(parts)

    # -- data -----------------------------------------------------------------------------------
    def set_session(self, session, layer: str = "mask") -> None:
        self.session = session
        self.layer = layer
        self.n = len(session)
        self.view.setLimits(xMin=-0.5 - self.n * 0.02, xMax=self.n - 0.5 + self.n * 0.02,
                            minXRange=min(self.n, 10))
        self.view.setXRange(-0.5, self.n - 0.5, padding=0.01)
        self.redraw()

    def set_layer(self, layer: str) -> None:
        self.layer = layer
        self.redraw()

    def set_low_confidence(self, value: float) -> None:
        self.low_confidence = float(value)
        self.threshold.setValue(self.low_confidence)

    def set_current_model(self, tag: "str | None") -> None:
        """The model propagation uses now; frames another model made get a mark under the strip."""
        self.current_model = tag
        self.redraw()

    def older_model_frames(self) -> np.ndarray:
        """Bool per frame: propagated or stale, by another model than the current one."""
        models = self.session.model_array(self.layer)
        tags = self.session.model_tags
        current = tags.index(self.current_model) if self.current_model in tags else -2
        return (models >= 0) & (models != current)

    def mark_dirty(self) -> None:
        if not self._redraw.isActive():
            self._redraw.start()

    def redraw(self) -> None:
        if self.session is None:
            return
        self.redraws += 1
        status = self.session.status_array(self.layer)
        conf = self.session.confidence_array(self.layer).astype(np.float64)
        self._status = status
        rgba = STATUS_RGBA[status.astype(np.intp)][:, None, :]
        self.strip.setImage(rgba, autoLevels=False, levels=None)
        self.strip.setRect(-0.5, STRIP[0], self.n, STRIP[1])
        older = OLDER_MODEL_RGBA[self.older_model_frames().astype(np.intp)][:, None, :]
        self.model_strip.setImage(older, autoLevels=False, levels=None)
        self.model_strip.setRect(-0.5, MODEL_STRIP[0], self.n, MODEL_STRIP[1])
        x = np.arange(self.n, dtype=np.float64)
        conf[status == 1] = np.nan      # keyframes are certain by definition: no spike in the curve
        self.curve.setData(x, conf)
        keys = np.flatnonzero(status == 1)
        self.keymarks.setData(keys.astype(np.float64), np.full(len(keys), STRIP[0] + STRIP[1] + 0.06))

    def set_frame(self, i: int) -> None:
        self.cursor.setValue(i)
        lo, hi = self.view.viewRange()[0]
        if not lo <= i <= hi:       # keep the cursor in view when zoomed in
            half = (hi - lo) / 2
            self.view.setXRange(i - half, i + half, padding=0)

    def _on_scrub(self, x: float) -> None:
        if self.n:
            self.frame_requested.emit(int(min(self.n - 1, max(0, round(x)))))
