"""Linked orthogonal views (XY, XZ, YZ + a max projection) with a crosshair cursor, as in Fiji and napari.

Layout as in Fiji's Orthogonal Views: XY top left, YZ to its right (z horizontal), XZ below it
(z vertical); the empty fourth quadrant shows the maximum-intensity projection along z. Images
are placed in micrometres, so the aspect follows the voxel size; XY/XZ share the x range and
XY/YZ the y range. The cursor ``(z, y, x)`` in voxels is the one state; :meth:`OrthoView.set_cursor`
updates every view and slider under signal blockers, and ``cursorChanged`` is emitted once per
real change, so linked views never loop.

Mouse and keys (Fiji's convention): the wheel steps through slices of the plane under the mouse (down: +1),
Ctrl+wheel zooms, middle/right drag pans, a left click places the cursor. ``<``/``>`` (also ``,``/``.``)
and the left/right arrows step one slice, PageUp/PageDown ten, Home (or Ctrl+0) fits the view.
Views fit their image whenever they are shown with a usable size (a view fitted while hidden
would have had a zero size).

The display (LUT, contrast limits, gamma, following another view) is :mod:`.view_display`'s; the
pieces (view boxes, lookup tables, scale bar, histogram) are :mod:`.view_tools`'.
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.volume import Volume
from ..quality.planes import channel_view, viewable
from .view_display import DisplayMixin, status_text
from .view_tools import (
    AUTO_PERCENTILES,
    COMPOSITE_COLORS,
    LUTS,
    Graphics,
    Plane,
    ScaleBar,
    auto_levels,
    fit_axial,
    fit_rect,
    lookup_table,
    split_by_extent,
    title_px,
)

log = logging.getLogger(__name__)

__all__ = ["LUTS", "AUTO_PERCENTILES", "OrthoView", "auto_levels", "lookup_table"]
STEP_KEYS = {Qt.Key.Key_Right: 1, Qt.Key.Key_Period: 1, Qt.Key.Key_Greater: 1, Qt.Key.Key_Left: -1,
             Qt.Key.Key_Comma: -1, Qt.Key.Key_Less: -1, Qt.Key.Key_PageUp: 10, Qt.Key.Key_PageDown: -10}
PLANE_AXIS = {"xy": "z", "xz": "y", "yz": "x", "mip": "z"}  # the axis a plane's wheel/keys step
MIN_FIT_PX = 40


class OrthoView(DisplayMixin, QWidget):
    """Linked XY / XZ / YZ views of a ZYX volume (channel, composite and time point selectable)."""

    cursorChanged = Signal(int, int, int)  # z, y, x voxels
    volumeChanged = Signal()
    displayChanged = Signal(str, float, float, float)  # LUT, min, max, gamma

    def __init__(self, parent: QWidget | None = None, *, title: str = "", lut: str = "gray",
                 controls: bool = True) -> None:
        """``controls=False`` hides LUT/contrast (e.g. a view that follows another's display)."""
        super().__init__(parent)
        self.volume: Volume | None = None
        self.data: np.ndarray | None = None  # the displayed ZYX array (the first channel of a composite)
        self.composite: list[tuple[np.ndarray, tuple[float, float], np.ndarray]] | None = None
        self.voxel = (1.0, 1.0, 1.0)
        self.cursor = (0, 0, 0)
        self.active_axis = "z"
        self.hover_text = ""
        self._init_planes()
        self._wipe: np.ndarray | None = None
        self._wipe_fraction = 0.5
        self._fit_pending = False
        self._auto_fit = True  # refit on resize until the user zooms or pans
        self._build(title, lut)
        for w in self._controls:
            w.setVisible(controls)
        self.follow_label.setVisible(not controls)
        self.title.setVisible(bool(title))
        self._show_controls = controls
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    # ------------------------------------------------------------------ construction
    def _build(self, title: str, lut: str) -> None:
        self.graphics = Graphics(self)
        self.graphics.setBackground("k")
        self.graphics.setMinimumSize(120, 120)
        self.graphics.setToolTip("")
        lay = self.graphics.ci
        self.xy = Plane(lay, "xy", "XY", 0, 0)
        self.yz = Plane(lay, "yz", "YZ", 0, 1)
        self.xz = Plane(lay, "xz", "XZ", 1, 0)
        self.mip = Plane(lay, "mip", "MIP along z", 1, 1, crosshair=False, short_title="MIP")
        self.xz.box.setXLink(self.xy.box)
        self.yz.box.setYLink(self.xy.box)
        self.xy.box.sigCursor.connect(lambda x, y: self._clicked("xy", None, y, x))
        self.xz.box.sigCursor.connect(lambda x, z: self._clicked("xz", z, None, x))
        self.yz.box.sigCursor.connect(lambda z, y: self._clicked("yz", z, y, None))
        self.mip.box.sigCursor.connect(lambda x, y: self._clicked("mip", None, y, x))
        for p in self.plane_items():
            p.box.sigWheelStep.connect(lambda n, k=p.key: self.step(n, PLANE_AXIS[k]))
            p.box.sigRangeChangedManually.connect(self._user_moved_view)
        self.scale_bar = ScaleBar()
        self.scale_bar.setParentItem(self.xy.box)
        self.graphics.scene().sigMouseMoved.connect(self._hovered)

        self.sliders: dict[str, QSlider] = {}
        self.spins: dict[str, QSpinBox] = {}
        grid = QGridLayout()
        for row, axis in enumerate("zyx"):
            s = QSlider(Qt.Orientation.Horizontal, self)
            sp = QSpinBox(self)
            s.setToolTip(f"{axis.upper()} position of the cursor (plane shown in the other views)")
            sp.setToolTip(f"{axis.upper()} position of the cursor in pixels")
            s.valueChanged.connect(lambda v, a=axis: self._axis_moved(a, v))
            sp.valueChanged.connect(lambda v, a=axis: self._axis_moved(a, v))
            grid.addWidget(QLabel(axis.upper(), self), 0, 3 * row)  # one row: the canvas keeps the room
            grid.addWidget(s, 0, 3 * row + 1)
            grid.addWidget(sp, 0, 3 * row + 2)
            self.sliders[axis], self.spins[axis] = s, sp

        lut_label, auto = self._build_display(lut)
        self.fit_button = fit = QToolButton(self)
        fit.setText("Fit")
        fit.setToolTip("reset zoom and pan so every view shows its whole image (Home, Ctrl+0)")
        fit.clicked.connect(self.reset_view)
        self.channel = QComboBox(self)
        self.channel.currentIndexChanged.connect(self._channel_changed)
        self.channel.setToolTip("channel / time point shown; Composite overlays every channel in its colour")
        for combo in (self.lut, self.channel):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(7)

        bar = QHBoxLayout()
        self.title = QLabel(f"<b>{title}</b>" if title else "", self)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.follow_label = QLabel("display follows the left view", self)
        self.follow_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self.follow_label, 1)
        self.channel_label = QLabel("Channel", self)
        for w in (self.channel_label, self.channel, lut_label, self.lut, auto, fit):
            bar.addWidget(w)
        self.channel.setVisible(False)
        self.channel_label.setVisible(False)
        self.status = QLabel("no image", self)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.status.setFixedHeight(2 * self.status.fontMetrics().lineSpacing() + 4)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setToolTip("cursor, and under the mouse: position in pixels and µm, and the value")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addWidget(self.title)
        outer.addLayout(bar)
        outer.addWidget(self.contrast)
        outer.addWidget(self.graphics, 1)
        outer.addLayout(grid)
        outer.addWidget(self.status)
        self._apply_display()

    def plane_items(self) -> tuple[Plane, ...]:
        return (self.xy, self.xz, self.yz, self.mip)

    # ------------------------------------------------------------------ data
    def set_volume(self, volume: Volume | None, *, keep_cursor: bool = False, levels=None) -> None:
        """Show ``volume`` (any canonical axes); ``None`` clears the view."""
        self.volume = volume
        self._wipe = None
        with QSignalBlocker(self.channel):
            self.channel.clear()
            if volume is not None:
                for t in range(volume.n_timepoints):
                    tt = f" T{t}" if volume.n_timepoints > 1 else ""
                    for c in range(volume.n_channels):
                        self.channel.addItem(f"C{c}{tt}", (c, t))
                    if volume.n_channels > 1:
                        self.channel.addItem(f"Composite{tt}", (-1, t))
        self.channel.setVisible(self.channel.count() > 1)
        self.channel_label.setVisible(self.channel.count() > 1)
        self._load_channel(keep_cursor=keep_cursor, levels=levels)

    def set_composite(self, on: bool = True) -> None:
        """Show every channel in its own colour (or the first channel again)."""
        _c, t = self.channel.currentData() or (0, 0)
        want = (-1, t) if on else (0, t)
        for i in range(self.channel.count()):
            if tuple(self.channel.itemData(i)) == want:
                self.channel.setCurrentIndex(i)
                return

    def _channel_changed(self, _index: int) -> None:
        self._load_channel(keep_cursor=True)

    def _load_channel(self, keep_cursor: bool = False, levels=None) -> None:
        vol = self.volume
        if vol is None:
            self.data = self._mip = self.composite = None
            for p in self.plane_items():
                p.image.clear()
            self.contrast.set_histogram(None)
            self.status.setText("no image")
            return
        c, t = self.channel.currentData() or (0, 0)
        if c < 0:  # composite: every channel with its own colour and auto contrast
            chans = [channel_view(vol, i, t) for i in range(vol.n_channels)]
            self.composite = [(a, auto_levels(a), lookup_table(COMPOSITE_COLORS[i % len(COMPOSITE_COLORS)]))
                              for i, a in enumerate(chans)]
            self.data = chans[0]
        else:
            self.composite = None
            self.data = channel_view(vol, c, t)  # in memory: the array; too large: planes read when shown
        self.contrast.setEnabled(self.composite is None)
        self._mip = None
        self.voxel = tuple(float(v) for v in vol.voxel_size)
        nz, ny, nx = self.data.shape
        for axis, n in zip("zyx", (nz, ny, nx), strict=True):
            for w in (self.sliders[axis], self.spins[axis]):
                with QSignalBlocker(w):
                    w.setRange(0, n - 1)
        old = self.cursor
        self.cursor = (-1, -1, -1)
        target = old if keep_cursor else (nz // 2, ny // 2, nx // 2)
        self._histogram_and_levels(levels)
        self._place_images()
        self.set_cursor(*target)
        self.volumeChanged.emit()

    def set_wipe(self, other: np.ndarray | None, fraction: float = 0.5) -> None:
        """Show ``other`` (same ZYX shape) right of ``fraction`` of the width; ``None`` ends the wipe."""
        if other is not None and self.data is not None and np.shape(other) != self.data.shape:
            raise ValueError(f"wipe volume shape {np.shape(other)} differs from {self.data.shape}")
        self._wipe = None if other is None else viewable(other)
        self._wipe_fraction = float(np.clip(fraction, 0.0, 1.0))
        self._mip = None
        self._new_planes()
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

    def step(self, n: int, axis: str | None = None) -> None:
        """Move the cursor ``n`` planes along ``axis`` (default: the axis of the last plane used)."""
        axis = axis or self.active_axis
        self.active_axis = axis
        z, y, x = self.cursor
        self.set_cursor(*{"z": (z + n, y, x), "y": (z, y + n, x), "x": (z, y, x + n)}[axis])

    def cursor_physical(self) -> tuple[float, float, float]:
        """The cursor's voxel centre in µm ``(z, y, x)``."""
        return tuple((i + 0.5) * d for i, d in zip(self.cursor, self.voxel, strict=True))  # type: ignore[return-value]

    def set_cursor_physical(self, z_um: float, y_um: float, x_um: float) -> None:
        dz, dy, dx = self.voxel
        self.set_cursor(int(np.floor(z_um / dz)), int(np.floor(y_um / dy)), int(np.floor(x_um / dx)))

    def _axis_moved(self, axis: str, value: int) -> None:
        z, y, x = self.cursor
        self.set_cursor(*{"z": (value, y, x), "y": (z, value, x), "x": (z, y, value)}[axis])

    def _clicked(self, plane: str, z_um: float | None, y_um: float | None, x_um: float | None) -> None:
        if self.data is None:
            return
        self.active_axis = PLANE_AXIS[plane]
        dz, dy, dx = self.voxel
        z, y, x = self.cursor
        self.set_cursor(z if z_um is None else int(np.floor(z_um / dz)),
                        y if y_um is None else int(np.floor(y_um / dy)),
                        x if x_um is None else int(np.floor(x_um / dx)))

    # ------------------------------------------------------------------ hover readout
    def _hovered(self, scene_pos) -> None:
        for p in self.plane_items():
            if p.box.sceneBoundingRect().contains(scene_pos):
                v = p.box.mapSceneToView(scene_pos)
                self.active_axis = PLANE_AXIS[p.key]
                self.hover(p.key, v.x(), v.y())
                return

    def hover(self, plane: str, u_um: float, v_um: float) -> str:
        """The readout for view coordinates ``(u, v)`` µm of ``plane`` (also shown in the status line)."""
        if self.data is None:
            return ""
        dz, dy, dx = self.voxel
        z, y, x = self.cursor
        if plane in ("xy", "mip"):
            x, y = int(np.floor(u_um / dx)), int(np.floor(v_um / dy))
        elif plane == "xz":
            x, z = int(np.floor(u_um / dx)), int(np.floor(v_um / dz))
        else:
            z, y = int(np.floor(u_um / dz)), int(np.floor(v_um / dy))
        nz, ny, nx = self.data.shape
        if not (0 <= z < nz and 0 <= y < ny and 0 <= x < nx):
            self.hover_text = ""
        else:
            if plane == "mip":
                if (mip := self._mip_image()) is None:  # still being made
                    return ""
                value, what, zt = float(mip[y, x]), "max", "z=all"
            else:  # the voxel as shown (right of the wipe: the wiped-in stack); a plane read is kept
                cut = int(round(self._wipe_fraction * nx))
                value = float((self._wipe if self._wipe is not None and x >= cut else self.data)[z, y, x])
                what, zt = "value", f"z={z}"
            self.hover_text = (f"{zt} y={y} x={x} px  {what} {value:.5g}  ({(z + 0.5) * dz:.2f}, "
                               f"{(y + 0.5) * dy:.2f}, {(x + 0.5) * dx:.2f} µm)")
        self._update_status()
        return self.hover_text

    def _update_status(self) -> None:
        if self.data is None:
            return
        z, y, x = self.cursor
        # two lines, each fitted to the label's width (the µm positions always show whole), so moving the mouse
        # never re-lays out the views; a stack in its file: the value once its planes are read (not a Zarr chunk)
        value = self.data.cached((z, y, x)) if hasattr(self.data, "cached") else self.data[z, y, x]
        self.status.setText(status_text(self.status, self.cursor, None if value is None else float(value),
                                        self.cursor_physical(), self.voxel, self.hover_text))

    # ------------------------------------------------------------------ keys, fitting
    def _split(self) -> None:
        """Columns and rows sized by physical extent (XY | Z), so the linked views all fit; refit."""
        if self.data is None or not split_by_extent(self.graphics, self.data.shape, self.voxel):
            return
        if self._auto_fit:
            self.reset_view()
        self._fit_if_ready()

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt naming
        if not self._key(event):
            super().keyPressEvent(event)

    def _key(self, event) -> bool:
        key = Qt.Key(event.key())
        if key in STEP_KEYS and not (event.modifiers() & Qt.KeyboardModifier.ControlModifier):
            self.step(STEP_KEYS[key])
            return True
        if key == Qt.Key.Key_Home:
            self.reset_view()
            return True
        return False

    def _user_moved_view(self, *_args) -> None:
        self._auto_fit = False

    def reset_view(self) -> None:
        """Fit each view to its image (zoom and pan reset); it then follows resizes again."""
        self._auto_fit = True
        if self.data is None:
            return
        # XY fits above the scale bar, MIP below its title; XZ/YZ share XY's x/y range: only z is left
        nz, ny, nx = self.data.shape
        dz, dy, dx = self.voxel
        fit_rect(self.mip.box, nx * dx, ny * dy, top=title_px(self.mip))
        fit_rect(self.xy.box, nx * dx, ny * dy, bottom=self.scale_bar.extent_px())
        fit_axial(self.xz.box, nz * dz, True)
        fit_axial(self.yz.box, nz * dz, False)

    def _fit_if_ready(self) -> None:
        if not self._fit_pending or self.data is None or not self.isVisible():
            return
        if self.graphics.width() < MIN_FIT_PX or self.graphics.height() < MIN_FIT_PX:
            return
        self._fit_pending = False
        self.reset_view()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        QTimer.singleShot(0, self._fit_if_ready)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._update_status()
        self._fit_if_ready()
