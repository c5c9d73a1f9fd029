"""Before/after comparison: side by side, wipe or toggle; the uncertainty view; metrics.

"Before" is the input interpolated linearly onto the output grid (the same z sampling as the
restored stack), so both views share shape and calibration; side by side, their cursors (slices),
zoom and pan are linked 1:1. The uncertainty view is the disagreement between the methods run
on this stack: the per-voxel spread of their normalised results (where methods agree, the
restoration is constrained by the data; where they differ, it is a guess).
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.volume import Volume
from ..data.normalize import NORM_PERCENTILES
from ..physics.forward import upsample
from ..quality.planes import channel_view
from .orthoview import OrthoView

log = logging.getLogger(__name__)

MODES = ("Side by side", "Wipe", "Toggle", "Uncertainty", "Residual")
#: the residual view's display range, in noise sigmas (a consistent restoration stays mostly within it)
RESIDUAL_RANGE = 3.0
METRIC_KEYS = ("psnr", "ssim", "ms_ssim", "nrmse")


def interpolated_input(volume: Volume, factor: float) -> Volume:
    """The input on the output grid (linear along z): the 'before' of a comparison."""
    data = upsample(np.asarray(volume.data, np.float32), factor, axis=len(volume.axes) - 3, order=1)
    dz, dy, dx = volume.voxel_size
    return volume.with_data(data, voxel_size=(dz / factor, dy, dx), name=f"{volume.name}_interpolated")


def _normalised(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, NORM_PERCENTILES)
    return (a - lo) / max(hi - lo, 1e-12)


def disagreement(volumes: list[np.ndarray]) -> np.ndarray:
    """Per-voxel standard deviation across percentile-normalised results (|a - b| / 2 for two)."""
    stack = np.stack([_normalised(np.asarray(v, np.float32)) for v in volumes])
    return stack.std(axis=0).astype(np.float32)


class _Pair(QWidget):
    """Before and after side by side, always of the same width (an odd spare pixel goes to the
    spacing): their linked ranges then map 1:1."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.row = QHBoxLayout()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        self.row.setSpacing(6 + (event.size().width() - 6) % 2)
        super().resizeEvent(event)


class ComparePanel(QWidget):
    """Shows the results of the runs in this session against the interpolated input."""

    metricsChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.before: Volume | None = None
        self.results: dict[str, Volume] = {}
        self.residuals: dict[str, Volume] = {}  # data-consistency residual per result, where the run gave one
        self.reference: Volume | None = None
        self.metrics: dict[str, dict] = {}

        self.result_box = QComboBox(self)
        self.result_box.setToolTip("which restored result to compare (one per method run on this stack)")
        self.result_box.currentIndexChanged.connect(self._refresh)
        self.mode = QComboBox(self)
        self.mode.addItems(MODES)
        self.mode.setToolTip("side by side (linked), a wipe, a toggle, the uncertainty view (where the "
                             "methods run on this stack disagree) or the residual (where the result, put through "
                             "the acquisition model, misses the recorded planes)")
        self.mode.currentIndexChanged.connect(self._refresh)
        self.wipe = QSlider(Qt.Orientation.Horizontal, self)
        self.wipe.setRange(0, 100)
        self.wipe.setValue(50)
        self.wipe.setToolTip("where the wipe cuts: before on the left, restored on the right")
        self.wipe.valueChanged.connect(self._refresh_single)
        self.toggle = QCheckBox("show restored", self)
        self.toggle.setToolTip("flip between the restored stack and the interpolated input (the T key in Fiji)")
        self.toggle.setChecked(True)
        self.toggle.toggled.connect(self._refresh_single)
        bar = QHBoxLayout()
        for w in (QLabel("Result", self), self.result_box, QLabel("View", self), self.mode, self.wipe,
                  self.toggle):
            bar.addWidget(w)
        bar.addStretch(1)

        self.left = OrthoView(self, title="Before (input, linear interpolation)")
        self.right = OrthoView(self, title="After (restored)")
        self.right.follow(self.left)
        self.single = OrthoView(self, title=" ")
        self.diff = OrthoView(self, title="Uncertainty: disagreement between methods (std of normalised results)",
                              lut="inferno")
        # before and after move together: slices (cursor), zoom and pan
        r, left = self.right, self.left
        r.xy.box.setXLink(left.xy.box)
        r.xy.box.setYLink(left.xy.box)
        r.xz.box.setYLink(left.xz.box)
        r.yz.box.setXLink(left.yz.box)
        r.mip.box.setXLink(left.mip.box)
        r.mip.box.setYLink(left.mip.box)
        self.single.volumeChanged.connect(self._refresh_single)
        self._linking = False
        for a, b in ((self.left, self.right), (self.right, self.left)):
            a.cursorChanged.connect(lambda *_c, a=a, b=b: self._link(a, b))
        pair = _Pair(self)
        outer = QVBoxLayout(pair)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addLayout(self._shared_display())
        outer.addLayout(pair.row, 1)
        pair.row.addWidget(self.left, 1)
        pair.row.addWidget(self.right, 1)
        self.stack = QStackedWidget(self)
        for w in (pair, self.single, self.diff):
            self.stack.addWidget(w)
        self.empty = QLabel("Run a method (Run button, Ctrl+R) to compare before and after.", self)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack.addWidget(self.empty)

        self.table = QTableWidget(0, len(METRIC_KEYS) + 1, self)
        self.table.setHorizontalHeaderLabels(["stack", "PSNR (dB)", "SSIM", "MS-SSIM", "NRMSE"])
        self.table.setMaximumHeight(130)
        self.table.setVisible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(bar)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.table)
        self._refresh()

    def _shared_display(self) -> QHBoxLayout:
        """The left view's LUT, Auto, contrast and Fit, once above both views (the right one follows
        it and is linked 1:1): the views' canvases get the height the two copies took."""
        left, row = self.left, QHBoxLayout()
        lut, lut_label, contrast, auto = left._controls
        for w in (lut_label, lut, auto, left.fit_button):
            row.addWidget(w)
        row.addWidget(contrast, 1)
        for w in (*self.right._controls, self.right.fit_button):
            w.setVisible(False)
        left.fit_button.clicked.disconnect()
        left.fit_button.clicked.connect(self.reset_views)
        return row

    # ------------------------------------------------------------------ data
    def set_input(self, volume: Volume | None) -> None:
        """A new input invalidates every result."""
        self._input = volume
        self.before = None
        self.results.clear()
        self.residuals.clear()
        self.metrics.clear()
        with_block = self.result_box.blockSignals(True)
        self.result_box.clear()
        self.result_box.blockSignals(with_block)
        self._refresh()

    def add_result(self, label: str, result: Volume, factor: float, before: Volume | None = None,
                   residual: Volume | None = None) -> None:
        """Show ``result``; ``before`` is the input on its grid when already made (by the worker);
        ``residual`` its data-consistency residual (noise sigmas, recorded planes) when the run made one."""
        if self.before is None or self.before.shape != result.shape:
            ok = before is not None and before.shape == result.shape
            self.before = before if ok else interpolated_input(self._input, factor)
        self.results[label] = result
        if residual is not None:
            self.residuals[label] = residual
        else:
            self.residuals.pop(label, None)
        with QSignalBlocker(self.result_box):  # one refresh below, with the right view deferred
            if self.result_box.findText(label) < 0:
                self.result_box.addItem(label)
            self.result_box.setCurrentText(label)
        if self.reference is not None:
            from ..core.errors import InputError

            try:
                self.compute_metrics()
            except InputError as exc:  # e.g. a result that stays in its file: shown, without metrics
                log.warning("no metrics for %s: %s", label, exc)
        self._refresh(defer=True)

    def current_result(self) -> Volume | None:
        return self.results.get(self.result_box.currentText())

    def comparable(self) -> list[str]:
        """Labels of results with the current result's shape (for the disagreement map)."""
        cur = self.current_result()
        return [k for k, v in self.results.items() if cur is not None and v.shape == cur.shape]

    # ------------------------------------------------------------------ display
    def _link(self, src: OrthoView, dst: OrthoView) -> None:
        if self._linking:
            return
        self._linking = True
        try:
            dst.set_cursor(*src.cursor)
        finally:
            self._linking = False

    def _show_left(self, then=None) -> None:
        """The "before" view (nothing to redo for the same input); ``then`` runs in the next turn."""
        if self.before is not None and self.left.volume is not self.before:
            self.left.set_volume(self.before)
        if then is not None:
            QTimer.singleShot(0, then)

    def _show_right(self, res: Volume, cursor) -> None:
        if self.current_result() is not res:
            return
        self.right.set_volume(res, levels=self.left.levels())
        self.right.set_display(self.left.lut.currentText(), *self.left.levels(), self.left.gamma())
        self.right.set_cursor(*(cursor if cursor is not None else self.left.cursor))

    def _refresh(self, *_args, defer: bool = False) -> None:
        res = self.current_result()
        mode = self.mode.currentText()
        self.wipe.setVisible(mode == "Wipe")
        self.toggle.setVisible(mode == "Toggle")
        if res is None or self.before is None:
            self.stack.setCurrentWidget(self.empty)
            return
        if mode == "Side by side":
            cursor = self.right.cursor if self.right.data is not None else None
            self.stack.setCurrentIndex(0)
            if defer:  # a new result: each view in its own event-loop turn (two short stalls, not one long)
                QTimer.singleShot(0, lambda: self._show_left(then=lambda: self._show_right(res, cursor)))
            else:
                self._show_left()
                self._show_right(res, cursor)
        elif mode == "Residual":
            self._show_residual(self.result_box.currentText())
        elif mode == "Uncertainty":
            labels = self.comparable()
            if len(labels) < 2:
                self.empty.setText("The uncertainty view is the disagreement between two or more methods on the "
                                   "same grid:\nrun another method, then choose Uncertainty.")
                self.stack.setCurrentWidget(self.empty)
                return
            res_vols = [self.results[k] for k in labels]
            if any(v.is_lazy for v in res_vols):
                self.empty.setText("The uncertainty view compares whole results in memory; these results stay in "
                                   "their files.\nCompare them side by side, or open a cropped stack.")
                self.stack.setCurrentWidget(self.empty)
                return
            maps = [disagreement([np.asarray(v.channel(c, t).data) for v in res_vols])
                    for t in range(res.n_timepoints) for c in range(res.n_channels)]
            data = maps[0] if res.axes == "ZYX" else np.stack(maps).reshape(res.shape)
            self.diff.title.setText(f"<b>Uncertainty: disagreement (std of normalised results) between "
                                    f"{', '.join(labels)}</b>")
            self.diff.set_volume(res.with_data(data, name="disagreement"))
            self.diff.set_lut("inferno")
            self.stack.setCurrentIndex(2)
        else:
            self.single.set_volume(res)
            self.stack.setCurrentIndex(1)
            self._refresh_single()

    def _show_residual(self, label: str) -> None:
        """The residual in noise sigmas on the recorded planes, signed, at a fixed range of ±3 sigma."""
        res = self.residuals.get(label)
        if res is None:
            self.empty.setText(f"{label} has no data-consistency residual: the run had no noise model, restored "
                               "onto the input grid,\nor wrote its result block by block into a file (use "
                               "`isoapp restore --residual-map` on a crop).")
            self.stack.setCurrentWidget(self.empty)
            return
        self.diff.title.setText(f"<b>Residual ({label}): (recorded − result through the acquisition model) / "
                                f"noise sigma, ±{RESIDUAL_RANGE:g}</b>")
        self.diff.set_volume(res, levels=(-RESIDUAL_RANGE, RESIDUAL_RANGE))
        self.diff.set_lut("diverging")
        self.stack.setCurrentIndex(2)

    def reset_views(self) -> None:
        """Fit every view of the comparison (zoom and pan reset)."""
        for v in (self.left, self.right, self.single, self.diff):
            v.reset_view()

    def _refresh_single(self, *_args) -> None:
        res = self.current_result()
        if res is None or self.before is None or self.single.volume is None:
            return
        mode = self.mode.currentText()
        c, t = self.single.channel.currentData() or (0, 0)
        before = channel_view(self.before, c, t)
        if mode == "Wipe":
            self.single.title.setText("<b>Wipe: before (left) | restored (right)</b>")
            self.single.data = before
            self.single.set_wipe(channel_view(res, c, t), self.wipe.value() / 100)
        elif mode == "Toggle":
            show = self.toggle.isChecked()
            self.single.title.setText("<b>Restored</b>" if show else "<b>Before (interpolated input)</b>")
            self.single.data = channel_view(res, c, t) if show else before
            self.single.set_wipe(None)

    # ------------------------------------------------------------------ metrics
    def set_reference(self, reference: Volume | None) -> None:
        self.reference = reference
        self.compute_metrics()

    def compute_metrics(self) -> None:
        """Metrics of every result (and the interpolated input) against the reference."""
        from ..core.errors import InputError
        from ..quality.metrics import compute_metrics

        self.metrics.clear()
        ref = self.reference
        if ref is None:
            self.table.setVisible(False)
            return
        rows = ([("input (linear interpolation)", self.before)] if self.before is not None else [])
        rows += list(self.results.items())
        if rows and all(v.shape != ref.shape for _, v in rows):
            raise InputError(f"the reference {ref.name} has shape {ref.shape} but the restored stacks have "
                             f"{rows[0][1].shape}; load a ground truth on the output grid (z step dz/F)")
        if any(v.is_lazy for _, v in rows) or ref.is_lazy:
            raise InputError("metrics against a reference need the stacks in memory, and these stay in their "
                             "files; compute them on a crop with `isoapp metrics`")
        for label, vol in rows:
            if vol.shape == ref.shape:
                self.metrics[label] = compute_metrics(np.asarray(ref.data, np.float32),
                                                      np.asarray(vol.data, np.float32))
        self.table.setRowCount(len(self.metrics))
        for r, (label, m) in enumerate(self.metrics.items()):
            self.table.setItem(r, 0, QTableWidgetItem(label))
            for c, key in enumerate(METRIC_KEYS, start=1):
                self.table.setItem(r, c, QTableWidgetItem(f"{m[key]:.4g}"))
        self.table.resizeColumnsToContents()
        self.table.setVisible(bool(self.metrics) or ref is not None)
        self.metricsChanged.emit()
