"""Run progress: stage, progress bar with ETA, live loss plot and live XZ/YZ previews."""

from __future__ import annotations

import logging

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSplitter, QVBoxLayout, QWidget

from ..engine.events import PreviewEvent, ProgressEvent
from .orthoview import auto_levels

log = logging.getLogger(__name__)


def format_eta(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return ""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressPanel(QWidget):
    """Shows what the worker relays; knows nothing about the worker itself."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stage_label = QLabel("Idle", self)
        self.stage_label.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self.eta = QLabel("", self)
        top = QHBoxLayout()
        top.addWidget(self.bar, 1)
        top.addWidget(self.eta)

        self.loss_plot = pg.PlotWidget(self, title="Training loss")
        self.loss_plot.setLogMode(False, True)
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.addLegend(offset=(-10, 10))
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#3498db", width=2), name="loss")
        self.val_curve = self.loss_plot.plot([], [], pen=None, symbol="o", symbolSize=6,
                                             symbolBrush="#e67e22", name="validation")
        self.loss_steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.val_losses: list[float] = []

        self.preview = pg.GraphicsLayoutWidget(self)
        self.preview.setBackground("k")
        self.boxes: dict[str, pg.ViewBox] = {}
        self.images: dict[str, pg.ImageItem] = {}
        titles = {"in_xz": "input XZ (interpolated)", "xz": "restored XZ (live)",
                  "in_yz": "input YZ (interpolated)", "yz": "restored YZ (live)"}
        for i, key in enumerate(("in_xz", "xz", "in_yz", "yz")):  # one column: fits a side dock
            self.preview.addLabel(titles[key], row=2 * i, col=0, color="#ffd700", size="8pt")
            box = self.preview.addViewBox(row=2 * i + 1, col=0, lockAspect=True, invertY=True,
                                          enableMenu=False)
            img = pg.ImageItem(axisOrder="row-major")
            box.addItem(img)
            self.boxes[key], self.images[key] = box, img
        self.boxes["xz"].setXLink(self.boxes["in_xz"])
        self.boxes["xz"].setYLink(self.boxes["in_xz"])
        self.boxes["yz"].setXLink(self.boxes["in_yz"])
        self.boxes["yz"].setYLink(self.boxes["in_yz"])
        self.preview_label = QLabel("Live preview: waiting for the first preview", self)
        self.preview_label.setWordWrap(True)
        self.voxel_out = (1.0, 1.0, 1.0)
        self.levels: tuple[float, float] | None = None
        self.preview_count = 0

        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.loss_plot)
        pw = QWidget(self)
        pl = QVBoxLayout(pw)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.preview, 1)
        pl.addWidget(self.preview_label)
        split.addWidget(pw)
        split.setSizes([220, 560])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.stage_label)
        lay.addLayout(top)
        lay.addWidget(split, 1)

    # ------------------------------------------------------------------ run lifecycle
    def start(self, voxel_out: tuple[float, float, float], input_planes: dict[str, np.ndarray],
              position_text: str) -> None:
        """Reset for a new run; ``input_planes`` ('xz' (Z', X), 'yz' (Z', Y)) on the output grid."""
        self.loss_steps.clear()
        self.losses.clear()
        self.val_steps.clear()
        self.val_losses.clear()
        self.loss_curve.setData([], [])
        self.val_curve.setData([], [])
        self.preview_count = 0
        self.voxel_out = tuple(float(v) for v in voxel_out)
        self.levels = auto_levels(np.concatenate([input_planes["xz"].ravel(), input_planes["yz"].ravel()]))
        for key in ("xz", "yz"):
            self.images[key].clear()
            self._show(f"in_{key}", input_planes[key])
            self._show(key, np.zeros_like(input_planes[key]))
        self.boxes["in_xz"].autoRange(padding=0.02)
        self.boxes["in_yz"].autoRange(padding=0.02)
        self.preview_label.setText(f"Live preview at {position_text}: waiting for the first preview")
        self.position_text = position_text
        self.stage_label.setText("Starting…")
        self.bar.setValue(0)
        self.eta.setText("")

    def _show(self, key: str, plane: np.ndarray) -> None:
        dz, dy, dx = self.voxel_out
        n_z, n_l = plane.shape  # planes are (Z', X) or (Z', Y); shown with z down
        lateral = dx if key.endswith("xz") else dy
        img = self.images[key]
        img.setImage(np.asarray(plane, np.float32), autoLevels=False, levels=self.levels or (0, 1))
        img.setRect(QRectF(0, 0, n_l * lateral, n_z * dz))

    def set_stage(self, stage: str, description: str) -> None:
        self.stage_label.setText(description or stage)

    def on_progress(self, ev: ProgressEvent) -> None:
        total = max(int(ev.total), 1)
        self.bar.setValue(int(round(100 * min(ev.step, total) / total)))
        self.bar.setFormat(f"{ev.stage} {ev.step}/{ev.total}")
        eta = format_eta(ev.eta_s)
        self.eta.setText(f"ETA {eta}" if eta else "")
        if ev.loss is not None and np.isfinite(ev.loss) and ev.loss > 0:
            self.loss_steps.append(int(ev.step))
            self.losses.append(float(ev.loss))
            self.loss_curve.setData(self.loss_steps, self.losses)
        if ev.val_loss is not None and np.isfinite(ev.val_loss) and ev.val_loss > 0:
            if not self.val_steps or self.val_steps[-1] != ev.step:
                self.val_steps.append(int(ev.step))
                self.val_losses.append(float(ev.val_loss))
                self.val_curve.setData(self.val_steps, self.val_losses)

    def on_preview(self, ev: PreviewEvent) -> None:
        self.preview_count += 1
        for key in ("xz", "yz"):
            plane = ev.planes.get(key)
            if plane is not None:
                self._show(key, np.asarray(plane))
        self.preview_label.setText(f"Live preview at {self.position_text}: {ev.stage} step {ev.step}")

    def finish(self, text: str) -> None:
        self.stage_label.setText(text)
        if text.startswith("Done"):
            self.bar.setValue(100)
        self.eta.setText("")
