"""A small plot of predicted quality per slice, drawn with QPainter (no plotting library needed)."""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF, Qt, Signal
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget


class QualityPlot(QWidget):
    """Predicted Dice (0..1) against slice; grey ticks: annotated slices, blue: current, red: recommended,
    orange ticks: just past an end where a sweep was stopped while the object may go on (cut_ends).
    Clicking the plot asks to move to that slice."""

    slice_clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.quality = np.zeros(0)
        self.current = None
        self.recommended = None
        self.annotated: list[int] = []
        self.cut: list[int] = []

    def set_data(self, quality=None, current=None, recommended=None, annotated=None, cut=None):
        if quality is not None:
            self.quality = np.asarray(quality, float)
        self.current = current
        self.recommended = recommended
        if annotated is not None:
            self.annotated = list(annotated)
        if cut is not None:
            self.cut = list(cut)
        self.update()

    def _x(self, z, w):
        n = max(len(self.quality) - 1, 1)
        return 30 + (w - 40) * z / n

    def mousePressEvent(self, ev):
        n = len(self.quality)
        if n:
            w = self.width()
            x = ev.pos().x()
            z = int(round((x - 30) / max(w - 40, 1) * max(n - 1, 1)))
            self.slice_clicked.emit(int(np.clip(z, 0, n - 1)))

    def paintEvent(self, _):
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        w, h = self.width(), self.height()
        top, bottom = 8, h - 18
        p.fillRect(self.rect(), QColor(38, 41, 48))
        p.setPen(QPen(QColor(120, 120, 130), 1))
        p.drawLine(30, bottom, w - 10, bottom)
        p.drawLine(30, top, 30, bottom)
        p.drawText(2, top + 10, "1.0")
        p.drawText(2, bottom, "0.0")
        p.drawText(w // 2 - 40, h - 3, "slice (predicted Dice)")
        y = lambda q: bottom - (bottom - top) * float(q)  # noqa: E731
        p.setPen(QPen(QColor(160, 160, 160), 1))
        for z in self.annotated:
            p.drawLine(QPointF(self._x(z, w), bottom), QPointF(self._x(z, w), bottom - 6))
        p.setPen(QPen(QColor(255, 140, 0), 3))
        for z in self.cut:
            p.drawLine(QPointF(self._x(z, w), top), QPointF(self._x(z, w), top + 14))
        q = self.quality
        if len(q):
            p.setPen(QPen(QColor(250, 200, 60), 2))
            run = QPolygonF()
            for z, v in enumerate(q):
                if np.isfinite(v):
                    run.append(QPointF(self._x(z, w), y(v)))
                elif run.size():
                    p.drawPolyline(run)
                    run = QPolygonF()
            if run.size():
                p.drawPolyline(run)
        for z, col in ((self.current, QColor(80, 160, 255)), (self.recommended, QColor(255, 80, 80))):
            if z is not None and len(q):
                p.setPen(QPen(col, 2, Qt.DashLine))
                p.drawLine(QPointF(self._x(z, w), top), QPointF(self._x(z, w), bottom))
        p.end()
