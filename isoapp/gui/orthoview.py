"""Three linked orthogonal views (XY, XZ, YZ) with a crosshair cursor, plane sliders, contrast and LUT.

Layout as in Fiji's Orthogonal Views: XY top left, YZ to its right (z horizontal), XZ below it
(z vertical). Images are placed in micrometres, so the aspect follows the voxel size; XY/XZ
share the x range and XY/YZ the y range. The cursor ``(z, y, x)`` in voxels is the one state;
:meth:`OrthoView.set_cursor` updates every view and slider under signal blockers, and
``cursorChanged`` is emitted once per real change, so linked views never loop.
"""

from __future__ import annotations

import logging

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..volume import Volume

log = logging.getLogger(__name__)

LUTS = ("gray", "fire", "viridis", "magma", "inferno", "green", "magenta", "cyan")
AUTO_PERCENTILES = (0.5, 99.8)


def lookup_table(name: str) -> np.ndarray:
    """A 256x3 uint8 lookup table for ``name`` (one of :data:`LUTS`)."""
    ramp = np.linspace(0, 1, 256)
    simple = {"gray": (1, 1, 1), "green": (0, 1, 0), "magenta": (1, 0, 1), "cyan": (0, 1, 1)}
    if name in simple:
        rgb = np.outer(ramp, simple[name])
    elif name == "fire":
        rgb = np.stack([np.clip(ramp * 1.5, 0, 1), np.clip(ramp * 2 - 0.6, 0, 1), np.clip(ramp * 3 - 2, 0, 1)], 1)
    else:
        return pg.colormap.get(name).getLookupTable(0.0, 1.0, 256, alpha=False)
    return (rgb * 255).astype(np.uint8)


def auto_levels(data: np.ndarray, percentiles: tuple[float, float] = AUTO_PERCENTILES) -> tuple[float, float]:
    """Display range from percentiles of (a subsample of) ``data``."""
    a = np.asarray(data)
    step = max(1, int(round((a.size / 2_000_000) ** (1 / 3))))
    sample = a[::step, ::step, ::step] if a.ndim == 3 else a
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, percentiles))
    if hi <= lo:
        hi = lo + max(abs(lo) * 1e-3, 1e-6)
    return lo, hi


class CursorViewBox(pg.ViewBox):
    """A view box where the left button places the cursor (click or drag); middle drag pans."""

    sigCursor = Signal(float, float)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self.sigCursor.emit(p.x(), p.y())
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self.sigCursor.emit(p.x(), p.y())
        else:
            super().mouseDragEvent(ev, axis)


class _Plane:
    """One view: its box, image and crosshair lines."""

    def __init__(self, layout: pg.GraphicsLayout, title: str, row: int, col: int) -> None:
        self.box = CursorViewBox(lockAspect=True, invertY=True, enableMenu=False)
        layout.addItem(self.box, row, col)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image)
        pen = pg.mkPen((255, 215, 0, 170), width=1)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        self.box.addItem(self.vline, ignoreBounds=True)
        self.box.addItem(self.hline, ignoreBounds=True)
        self.label = pg.TextItem(title, color=(255, 215, 0), anchor=(0, 0))
        self.label.setParentItem(self.box)
        self.label.setPos(4, 2)


class OrthoView(QWidget):
    """Linked XY / XZ / YZ views of a ZYX volume (channel and time point selectable)."""

    cursorChanged = Signal(int, int, int)  # z, y, x voxels
    volumeChanged = Signal()
    displayChanged = Signal(str, float, float)  # LUT, min, max

    def __init__(self, parent: QWidget | None = None, *, title: str = "", lut: str = "gray",
                 controls: bool = True) -> None:
        """``controls=False`` hides LUT/contrast (e.g. a view that follows another's display)."""
        super().__init__(parent)
        self.volume: Volume | None = None
        self.data: np.ndarray | None = None  # the displayed ZYX array
        self.voxel = (1.0, 1.0, 1.0)
        self.cursor = (0, 0, 0)
        self._wipe: np.ndarray | None = None
        self._wipe_fraction = 0.5
        self._build(title, lut)
        for w in self._controls:
            w.setVisible(controls)
        self.follow_label.setVisible(not controls)
        self.title.setVisible(bool(title))
        self._show_controls = controls

    # ------------------------------------------------------------------ construction
    def _build(self, title: str, lut: str) -> None:
        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.setBackground("k")
        lay = self.graphics.ci
        self.xy = _Plane(lay, "XY", 0, 0)
        self.yz = _Plane(lay, "YZ", 0, 1)
        self.xz = _Plane(lay, "XZ", 1, 0)
        self.xz.box.setXLink(self.xy.box)
        self.yz.box.setYLink(self.xy.box)
        self.xy.box.sigCursor.connect(lambda x, y: self._clicked(None, y, x))
        self.xz.box.sigCursor.connect(lambda x, z: self._clicked(z, None, x))
        self.yz.box.sigCursor.connect(lambda z, y: self._clicked(z, y, None))

        self.sliders: dict[str, QSlider] = {}
        self.spins: dict[str, QSpinBox] = {}
        grid = QGridLayout()
        for row, axis in enumerate("zyx"):
            s = QSlider(Qt.Orientation.Horizontal, self)
            sp = QSpinBox(self)
            s.valueChanged.connect(lambda v, a=axis: self._axis_moved(a, v))
            sp.valueChanged.connect(lambda v, a=axis: self._axis_moved(a, v))
            grid.addWidget(QLabel(axis.upper(), self), row, 0)
            grid.addWidget(s, row, 1)
            grid.addWidget(sp, row, 2)
            self.sliders[axis], self.spins[axis] = s, sp

        self.lut = QComboBox(self)
        self.lut.addItems(LUTS)
        self.lut.setCurrentText(lut)
        self.lut.currentTextChanged.connect(self._apply_display)
        self.lo = QDoubleSpinBox(self)
        self.hi = QDoubleSpinBox(self)
        for sb in (self.lo, self.hi):
            sb.setRange(-1e12, 1e12)
            sb.setDecimals(3)
            sb.setKeyboardTracking(False)
            sb.setMaximumWidth(95)
            sb.valueChanged.connect(self._apply_display)
        auto = QPushButton("Auto", self)
        auto.setToolTip(f"contrast from the {AUTO_PERCENTILES[0]}-{AUTO_PERCENTILES[1]} percentiles")
        auto.clicked.connect(self.auto_contrast)
        self.channel = QComboBox(self)
        self.channel.currentIndexChanged.connect(self._channel_changed)
        self.channel.setToolTip("channel / time point shown")

        bar = QHBoxLayout()
        self.title = QLabel(f"<b>{title}</b>" if title else "", self)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.follow_label = QLabel("display follows the view on the left", self)
        bar.addWidget(self.follow_label)
        bar.addStretch(1)
        self.channel_label = QLabel("Channel", self)
        self.lo.setToolTip("display minimum")
        self.hi.setToolTip("display maximum")
        self._controls = [self.lut, QLabel("LUT", self), self.lo, self.hi, auto]
        for w in (self.channel_label, self.channel, self._controls[1], self.lut, self.lo, self.hi, auto):
            bar.addWidget(w)
        self.status = QLabel("no image", self)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addWidget(self.title)
        outer.addLayout(bar)
        outer.addWidget(self.graphics, 1)
        outer.addLayout(grid)
        outer.addWidget(self.status)
        self._apply_display()

    # ------------------------------------------------------------------ data
    def set_volume(self, volume: Volume | None, *, keep_cursor: bool = False, levels=None) -> None:
        """Show ``volume`` (any canonical axes); ``None`` clears the view."""
        self.volume = volume
        self._wipe = None
        with QSignalBlocker(self.channel):
            self.channel.clear()
            if volume is not None:
                for t in range(volume.n_timepoints):
                    for c in range(volume.n_channels):
                        self.channel.addItem(f"C{c}" + (f" T{t}" if volume.n_timepoints > 1 else ""), (c, t))
        self.channel.setVisible(self.channel.count() > 1)
        self.channel_label.setVisible(self.channel.count() > 1)
        self._load_channel(keep_cursor=keep_cursor, levels=levels)

    def _channel_changed(self, _index: int) -> None:
        self._load_channel(keep_cursor=True)

    def _load_channel(self, keep_cursor: bool = False, levels=None) -> None:
        vol = self.volume
        if vol is None:
            self.data = None
            for p in (self.xy, self.xz, self.yz):
                p.image.clear()
            self.status.setText("no image")
            return
        c, t = self.channel.currentData() or (0, 0)
        self.data = np.asarray(vol.channel(c, t).data)
        self.voxel = tuple(float(v) for v in vol.voxel_size)
        nz, ny, nx = self.data.shape
        for axis, n in zip("zyx", (nz, ny, nx), strict=True):
            for w in (self.sliders[axis], self.spins[axis]):
                with QSignalBlocker(w):
                    w.setRange(0, n - 1)
        old = self.cursor
        self.cursor = (-1, -1, -1)
        target = old if keep_cursor else (nz // 2, ny // 2, nx // 2)
        self.set_levels(*(levels or auto_levels(self.data)))
        self._place_images()
        self.set_cursor(*target)
        self.volumeChanged.emit()

    def set_wipe(self, other: np.ndarray | None, fraction: float = 0.5) -> None:
        """Show ``other`` (same ZYX shape) right of ``fraction`` of the width; ``None`` ends the wipe."""
        if other is not None and self.data is not None and np.shape(other) != self.data.shape:
            raise ValueError(f"wipe volume shape {np.shape(other)} differs from {self.data.shape}")
        self._wipe = None if other is None else np.asarray(other)
        self._wipe_fraction = float(np.clip(fraction, 0.0, 1.0))
        self._update_images()

    # ------------------------------------------------------------------ cursor
    def set_cursor(self, z: int, y: int, x: int) -> None:
        """Move the cursor (voxels, clamped); emits ``cursorChanged`` only if it moved."""
        if self.data is None:
            return
        nz, ny, nx = self.data.shape
        new = (int(np.clip(z, 0, nz - 1)), int(np.clip(y, 0, ny - 1)), int(np.clip(x, 0, nx - 1)))
        if new == self.cursor:
            return
        self.cursor = new
        for axis, v in zip("zyx", new, strict=True):
            for w in (self.sliders[axis], self.spins[axis]):
                with QSignalBlocker(w):
                    w.setValue(v)
        self._update_images()
        self.cursorChanged.emit(*new)

    def cursor_physical(self) -> tuple[float, float, float]:
        """The cursor's voxel centre in µm ``(z, y, x)``."""
        return tuple((i + 0.5) * d for i, d in zip(self.cursor, self.voxel, strict=True))  # type: ignore[return-value]

    def set_cursor_physical(self, z_um: float, y_um: float, x_um: float) -> None:
        dz, dy, dx = self.voxel
        self.set_cursor(int(np.floor(z_um / dz)), int(np.floor(y_um / dy)), int(np.floor(x_um / dx)))

    def _axis_moved(self, axis: str, value: int) -> None:
        z, y, x = self.cursor
        self.set_cursor(*{"z": (value, y, x), "y": (z, value, x), "x": (z, y, value)}[axis])

    def _clicked(self, z_um: float | None, y_um: float | None, x_um: float | None) -> None:
        if self.data is None:
            return
        dz, dy, dx = self.voxel
        z, y, x = self.cursor
        self.set_cursor(z if z_um is None else int(np.floor(z_um / dz)),
                        y if y_um is None else int(np.floor(y_um / dy)),
                        x if x_um is None else int(np.floor(x_um / dx)))

    # ------------------------------------------------------------------ display
    def planes(self) -> dict[str, np.ndarray]:
        """The three planes at the cursor as displayed: ``xy`` (Y, X), ``xz`` (Z, X), ``yz`` (Y, Z)."""
        if self.data is None:
            return {}
        z, y, x = self.cursor
        out = {"xy": self.data[z], "xz": self.data[:, y, :], "yz": self.data[:, :, x].T}
        if self._wipe is not None:
            w = self._wipe
            cut = int(round(self._wipe_fraction * self.data.shape[2]))
            xy, xz = out["xy"].copy(), out["xz"].copy()
            xy[:, cut:], xz[:, cut:] = w[z][:, cut:], w[:, y, cut:]
            out.update(xy=xy, xz=xz, yz=(w[:, :, x].T if x >= cut else out["yz"]))
        return out

    def _place_images(self) -> None:
        nz, ny, nx = self.data.shape
        dz, dy, dx = self.voxel
        self._update_images()  # set the images first: setRect scales from the current image size
        self.xy.image.setRect(QRectF(0, 0, nx * dx, ny * dy))
        self.xz.image.setRect(QRectF(0, 0, nx * dx, nz * dz))
        self.yz.image.setRect(QRectF(0, 0, nz * dz, ny * dy))
        # give each row/column room in proportion to its physical extent, so the linked views fill it
        grid = self.graphics.ci.layout
        w_xy, w_z, h_xy = nx * dx, nz * dz, ny * dy
        for i, (a, b) in enumerate(((w_xy, w_z), (h_xy, w_z))):
            fa = int(round(1000 * a / (a + b)))
            fb = max(1000 - fa, 150)  # the axial views stay visible for very thin stacks
            (grid.setColumnStretchFactor if i == 0 else grid.setRowStretchFactor)(0, fa)
            (grid.setColumnStretchFactor if i == 0 else grid.setRowStretchFactor)(1, fb)
        for p in (self.xy, self.xz, self.yz):
            p.box.autoRange(padding=0.02)

    def _update_images(self) -> None:
        if self.data is None:
            return
        planes = self.planes()
        levels = (self.lo.value(), self.hi.value())
        for key, p in (("xy", self.xy), ("xz", self.xz), ("yz", self.yz)):
            p.image.setImage(np.asarray(planes[key], np.float32), autoLevels=False, levels=levels)
        zc, yc, xc = self.cursor_physical()
        self.xy.vline.setPos(xc)
        self.xy.hline.setPos(yc)
        self.xz.vline.setPos(xc)
        self.xz.hline.setPos(zc)
        self.yz.vline.setPos(zc)
        self.yz.hline.setPos(yc)
        z, y, x = self.cursor
        value = float(self.data[z, y, x])
        self.status.setText(f"z={z} y={y} x={x}  ({zc:.2f}, {yc:.2f}, {xc:.2f} µm)  value {value:.4g}  "
                            f"voxel {self.voxel[0]:g} x {self.voxel[1]:g} x {self.voxel[2]:g} µm")

    def set_levels(self, lo: float, hi: float) -> None:
        with QSignalBlocker(self.lo), QSignalBlocker(self.hi):
            self.lo.setValue(lo)
            self.hi.setValue(hi)
        self._apply_display()

    def levels(self) -> tuple[float, float]:
        return self.lo.value(), self.hi.value()

    def auto_contrast(self) -> None:
        if self.data is not None:
            self.set_levels(*auto_levels(self.data))

    def set_lut(self, name: str) -> None:
        self.lut.setCurrentText(name)

    def _apply_display(self, *_args) -> None:
        table = lookup_table(self.lut.currentText())
        levels = (self.lo.value(), self.hi.value())
        for p in (self.xy, self.xz, self.yz):
            p.image.setLookupTable(table)
            p.image.setLevels(levels)
        self.displayChanged.emit(self.lut.currentText(), *levels)

    def set_display(self, lut: str, lo: float, hi: float) -> None:
        """Follow another view's LUT and contrast."""
        with QSignalBlocker(self.lut):
            self.lut.setCurrentText(lut)
        self.set_levels(lo, hi)
