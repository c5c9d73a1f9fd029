"""Pieces of the orthogonal viewer: the view boxes (cursor clicks, wheel), lookup tables with gamma,
a µm scale bar, the contrast histogram and the channel composite.

Kept apart from :mod:`.orthoview` so each module stays small; nothing here knows about volumes.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QWidget

from ..data.levels import AUTO_PERCENTILES, STATS_SAMPLE, auto_levels, stats_sample  # noqa: F401 - re-exported

#: the longest side of a live-preview plane as drawn: the preview panel is a few hundred pixels wide, and a
#: 2045 x 2048 plane (a 4 GiB stack's XZ at F 4) took 100-180 ms per image to draw in the GUI thread
PREVIEW_MAX_PX = 768


def shrink_for_display(planes: dict, max_px: int | None = None) -> dict:
    """``planes`` ("xz", "yz": 2D arrays) block-averaged by one integer step so that no side exceeds ``max_px``
    (default :data:`PREVIEW_MAX_PX`).

    Called off the GUI thread. The step is returned as ``planes["step"]`` (the pixel size grows by it; the
    few pixels that do not fill a whole block at the far edges are dropped). Other entries pass through.
    """
    max_px = max_px or PREVIEW_MAX_PX
    arrays = {k: np.asarray(v, np.float32) for k, v in planes.items() if k in ("xz", "yz") and v is not None}
    step = max([1, *(math.ceil(max(a.shape) / max_px) for a in arrays.values())])
    out = dict(planes, step=step)
    if step > 1:
        for key, a in arrays.items():
            h, w = (a.shape[0] // step) * step, (a.shape[1] // step) * step
            out[key] = a[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))
    return out


LUTS = ("gray", "fire", "viridis", "magma", "inferno", "diverging", "green", "magenta", "cyan", "red", "blue",
        "yellow")
#: colours of a channel composite, in channel order (Fiji's default composite colours)
COMPOSITE_COLORS = ("green", "magenta", "cyan", "red", "blue", "yellow")
_RGB = {"gray": (1, 1, 1), "green": (0, 1, 0), "magenta": (1, 0, 1), "cyan": (0, 1, 1), "red": (1, 0, 0),
        "blue": (0, 0, 1), "yellow": (1, 1, 0)}


@functools.lru_cache(maxsize=64)
def lookup_table(name: str, gamma: float = 1.0) -> np.ndarray:
    """A 256x3 uint8 lookup table for ``name`` (one of :data:`LUTS`), with display ``gamma``; read-only.

    The same table object for the same arguments: pyqtgraph re-renders an image whenever it is given
    a different table object, which made every cursor move re-render all four 2048^2 images (0.2 s).
    """
    table = _lookup_table(name, float(gamma))
    table.setflags(write=False)
    return table


def _lookup_table(name: str, gamma: float) -> np.ndarray:
    ramp = np.linspace(0, 1, 256) ** max(float(gamma), 1e-3)
    if name in _RGB:
        rgb = np.outer(ramp, _RGB[name])
    elif name == "fire":
        rgb = np.stack([np.clip(ramp * 1.5, 0, 1), np.clip(ramp * 2 - 0.6, 0, 1), np.clip(ramp * 3 - 2, 0, 1)], 1)
    else:  # "diverging": blue - white - red (colorcet CET-D1), for signed maps such as a residual
        cmap = pg.colormap.get("CET-D1" if name == "diverging" else name)
        return (np.asarray(cmap.map(ramp, mode="float"))[:, :3] * 255).astype(np.uint8)
    return (rgb * 255).astype(np.uint8)


def nice_length(span: float) -> float:
    """A 1/2/5 x 10^k length near a fifth of ``span`` (for the scale bar)."""
    if not np.isfinite(span) or span <= 0:
        return 1.0
    target = span / 5
    k = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10**k <= target:
            return m * 10**k
    return 10**k


def format_um(length: float) -> str:
    if length >= 1000:
        return f"{length / 1000:g} mm"
    if length < 1:
        return f"{length * 1000:g} nm"
    return f"{length:g} µm"


class ScaleBar(pg.ScaleBar):
    """A scale bar in µm (view coordinates are µm) that picks a round length as the view zooms."""

    def __init__(self) -> None:
        super().__init__(1.0, width=4, brush=(255, 255, 255, 220), pen=None, suffix="", offset=(-8, -6))
        self.text.setColor((255, 255, 255))
        font = self.text.textItem.font()
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 6.0))
        self.text.setFont(font)

    def extent_px(self) -> tuple[float, float]:
        """(height, width) px the bar and its text take at the bottom right of the view."""
        text = self.text.boundingRect()
        view = self.parentItem()  # the bar is at most a fifth of the view's width (nice_length)
        return (6 + self._width + text.height(), 8 + max(view.width() / 5 if view is not None else 0, text.width()))

    def updateBar(self) -> None:  # noqa: N802 - pyqtgraph naming
        view = self.parentItem()
        if view is None:
            return
        (x0, x1), _ = view.viewRange()
        self.size = nice_length(x1 - x0)
        self.text.setText(format_um(self.size))
        super().updateBar()


class ContrastBar(QWidget):
    """Display minimum/maximum over a histogram of the data (drag the region or type), and gamma."""

    levelsChanged = Signal(float, float)
    gammaChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = pg.PlotWidget(self)
        self.plot.setFixedHeight(44)
        self.plot.setMinimumWidth(80)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMouseEnabled(False, False)
        self.plot.setMenuEnabled(False)
        self.plot.setToolTip("histogram of the stack (log counts); drag the shaded range or its edges to set "
                             "the display minimum and maximum")
        self.curve = self.plot.plot([], [], stepMode="center", fillLevel=0, brush=(120, 120, 120, 160), pen=None)
        self.region = pg.LinearRegionItem((0, 1), brush=(52, 152, 219, 60))
        self.plot.addItem(self.region)
        self.region.sigRegionChanged.connect(self._region_moved)
        self.lo = QDoubleSpinBox(self)
        self.hi = QDoubleSpinBox(self)
        for sb, what in ((self.lo, "minimum"), (self.hi, "maximum")):
            sb.setRange(-1e12, 1e12)
            sb.setDecimals(3)
            sb.setKeyboardTracking(False)
            sb.setMaximumWidth(90)
            sb.setToolTip(f"display {what}: values at or {'below' if what == 'minimum' else 'above'} it show "
                          f"as the LUT's {'darkest' if what == 'minimum' else 'brightest'} colour")
            sb.valueChanged.connect(self._typed)
        self.gamma = QDoubleSpinBox(self)
        self.gamma.setRange(0.1, 5.0)
        self.gamma.setSingleStep(0.1)
        self.gamma.setValue(1.0)
        self.gamma.setMaximumWidth(60)
        self.gamma.setToolTip("display gamma: below 1 brightens dim structures, above 1 darkens them "
                              "(the data are not changed)")
        self.gamma.valueChanged.connect(lambda v: self.gammaChanged.emit(float(v)))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.lo)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.hi)
        lay.addWidget(QLabel("γ", self))
        lay.addWidget(self.gamma)

    def set_histogram(self, data: np.ndarray | None) -> None:
        if data is None or np.size(data) == 0:
            self.curve.setData([], [])
            return
        sample = stats_sample(data)
        if sample.size == 0:
            return
        lo, hi = float(sample.min()), float(sample.max())
        counts, edges = np.histogram(sample, bins=128, range=(lo, hi if hi > lo else lo + 1))
        self.curve.setData(edges, np.log1p(counts))
        self.plot.setXRange(float(edges[0]), float(edges[-1]), padding=0.02)

    def set_levels(self, lo: float, hi: float) -> None:
        with QSignalBlocker(self.lo), QSignalBlocker(self.hi), QSignalBlocker(self.region):
            self.lo.setValue(lo)
            self.hi.setValue(hi)
            self.region.setRegion((lo, hi))

    def levels(self) -> tuple[float, float]:
        return float(self.lo.value()), float(self.hi.value())

    def _typed(self, *_args) -> None:
        with QSignalBlocker(self.region):
            self.region.setRegion(self.levels())
        self.levelsChanged.emit(*self.levels())

    def _region_moved(self) -> None:
        lo, hi = self.region.getRegion()
        with QSignalBlocker(self.lo), QSignalBlocker(self.hi):
            self.lo.setValue(float(lo))
            self.hi.setValue(float(hi))
        self.levelsChanged.emit(float(lo), float(hi))


def composite_rgb(planes: list[np.ndarray], levels: list[tuple[float, float]], tables: list[np.ndarray]) -> np.ndarray:
    """Channels through their colour LUTs (uint8 RGB), added and clipped: Fiji's composite display."""
    out = None
    for plane, (lo, hi), table in zip(planes, levels, tables, strict=True):
        idx = np.clip((np.asarray(plane, np.float32) - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8)
        rgb = table[idx].astype(np.uint16)
        out = rgb if out is None else out + rgb
    return np.minimum(out, 255).astype(np.uint8)


def split_by_extent(graphics: pg.GraphicsLayoutWidget, shape: tuple[int, int, int],
                    voxel: tuple[float, float, float]) -> bool:
    """Size the 2x2 grid's columns (x | z) and rows (y | z) by physical extent; False if too small.

    QGraphicsGridLayout's stretch factors do not split space proportionally, so fixed sizes are set
    on every resize; thin stacks keep at least 15 % for the axial views.
    """
    nz, ny, nx = shape
    dz, dy, dx = voxel
    grid = graphics.ci.layout
    left, top, right, bottom = grid.getContentsMargins()
    w = graphics.viewport().width() - left - right - grid.horizontalSpacing()
    h = graphics.viewport().height() - top - bottom - grid.verticalSpacing()
    if w < 20 or h < 20:
        return False
    for total, a, b, fixed in ((w, nx * dx, nz * dz, grid.setColumnFixedWidth),
                               (h, ny * dy, nz * dz, grid.setRowFixedHeight)):
        first = max(min(total * a / (a + b), total * 0.85), total * 0.15)
        fixed(0, first)
        fixed(1, total - first)
    grid.activate()
    return True


def title_px(plane: Plane) -> tuple[float, float]:
    """(height, width) px of a view's title at its top left ((0, 0) when hidden)."""
    if not plane.label.isVisible():
        return (0.0, 0.0)
    r = plane.label.boundingRect()
    return (r.height() + 2, r.width() + 2)


def fit_rect(box: pg.ViewBox, w: float, h: float, top: tuple[float, float] = (0, 0),
             bottom: tuple[float, float] = (0, 0), pad: float = 2.0) -> None:
    """Zoom ``box`` so the image ``(0, 0, w, h)`` (µm) fills it and nothing drawn in its corners lies
    over it: ``top`` is (height, width) px of a title at the top left, ``bottom`` of the scale bar at
    the bottom right; each gets a margin unless the image leaves it room beside it."""
    bw, bh = box.width(), box.height()
    room_w = bw - 2 * pad
    if w <= 0 or h <= 0 or room_w < 8 or bh - 2 * pad < 8:
        box.autoRange(padding=0.02)
        return
    s = min(room_w / w, (bh - 2 * pad) / h)  # pixels per µm
    beside = (bw - w * s) / 2  # free pixels left and right of the image
    t = top[0] if top[0] and beside < top[1] + pad else 0.0
    b = bottom[0] if bottom[0] and beside < bottom[1] + pad else 0.0
    room_h = bh - t - b - 2 * pad
    if room_h < 8:
        t = b = 0.0
        room_h = bh - 2 * pad
    s = min(room_w / w, room_h / h)
    x0 = w / 2 - bw / s / 2
    y0 = -(t + pad + (room_h - h * s) / 2) / s
    box.setRange(xRange=(x0, x0 + bw / s), yRange=(y0, y0 + bh / s), padding=0)


def fit_axial(box: pg.ViewBox, ext_z: float, vertical: bool, top: float = 0.0, pad: float = 2.0) -> None:
    """The z range of an axial view whose lateral range is linked to XY: the whole z extent, centred
    below a title of ``top`` pixels (XZ, z vertical) or centred (YZ, z horizontal)."""
    (x0, x1), (y0, y1) = box.viewRange()
    if vertical:
        s = box.width() / max(x1 - x0, 1e-12)
        free = (top + pad) / s
        span = max(box.height() / s, ext_z * 1.02 + free)
        start = -free - (span - ext_z - free) / 2
        box.setYRange(start, start + span, padding=0)
    else:
        half = max((x1 - x0) / 2, ext_z * 0.51)
        box.setXRange(ext_z / 2 - half, ext_z / 2 + half, padding=0)


def ctrl_held(modifiers) -> bool:
    """Whether Ctrl (Cmd on macOS) is held: Ctrl+wheel zooms, the plain wheel steps slices."""
    return bool(modifiers & Qt.KeyboardModifier.ControlModifier)


class CursorViewBox(pg.ViewBox):
    """Left button places the cursor (click or drag); the wheel steps slices, Ctrl+wheel zooms."""

    sigCursor = Signal(float, float)
    sigWheelStep = Signal(int)

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

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802
        if ctrl_held(ev.modifiers()):
            super().wheelEvent(ev, axis)
            return
        ev.accept()
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        if delta:  # Fiji: wheel down (towards the user, negative delta) shows the next slice
            self.sigWheelStep.emit(1 if delta < 0 else -1)


class Graphics(pg.GraphicsLayoutWidget):
    """The views' canvas: hands slice keys to the OrthoView and tells it when it was resized."""

    def __init__(self, owner) -> None:
        super().__init__(owner)
        self._owner = owner

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt naming
        owner = getattr(self, "_owner", None)
        if owner is None or not owner._key(event):
            super().keyPressEvent(event)

    def wheelEvent(self, event) -> None:  # noqa: N802
        # the view under the wheel takes the keyboard focus (Home, < and > then act on it, no click needed)
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        super().wheelEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        owner = getattr(self, "_owner", None)  # None while pyqtgraph's __init__ resizes
        if owner is not None:
            QTimer.singleShot(0, owner._split)


class Plane:
    """One view: its box, image, crosshair lines and a title in its top-left corner.

    The title sits on a dark backing (readable over a bright image) and is shortened to
    ``short_title``, or hidden, when the view is too narrow for it (the fourth quadrant of a thin
    stack is a few tens of pixels wide).
    """

    def __init__(self, layout: pg.GraphicsLayout, key: str, title: str, row: int, col: int,
                 crosshair: bool = True, short_title: str = "") -> None:
        self.key = key
        self.titles = (title, short_title or title)
        self.box = CursorViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.box.setMinimumSize(1, 1)
        layout.addItem(self.box, row, col)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image)
        pen = pg.mkPen((255, 215, 0, 170), width=1)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        if crosshair:
            self.box.addItem(self.vline, ignoreBounds=True)
            self.box.addItem(self.hline, ignoreBounds=True)
        self.label = pg.TextItem(title, color=(255, 215, 0), anchor=(0, 0), fill=(0, 0, 0, 150))
        self.label.setParentItem(self.box)
        self.label.setPos(2, 2)
        self.label.setToolTip(title)
        self.box.sigResized.connect(self.fit_title)

    def set_titles(self, title: str, short_title: str) -> None:
        """Change the title (and its short form)."""
        self.titles = (title, short_title)
        self.label.setToolTip(title)
        self.fit_title()

    def fit_title(self, *_args) -> None:
        """The longest title that fits the view's width, or none."""
        room = self.box.width() - 4
        for text in self.titles:
            self.label.setText(text)
            if self.label.boundingRect().width() <= room:
                self.label.setVisible(True)
                return
        self.label.setVisible(False)
