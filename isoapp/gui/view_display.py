"""The display of an :class:`isoapp.gui.orthoview.OrthoView`: lookup table, contrast limits over a
histogram, gamma, auto contrast, and following another view's display (before/after in Compare).

A mixin (kept apart so each module stays small): it builds the LUT box, the contrast bar and the
Auto button, cuts the planes at the cursor (with the wipe and the MIP) and maps them through them; the view supplies ``plane_items()``,
``data``, ``composite`` and the ``displayChanged`` signal.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSignalBlocker, Qt
from PySide6.QtWidgets import QComboBox, QLabel, QToolButton

from .plane_loader import PlaneLoader
from .view_tools import (
    AUTO_PERCENTILES,
    LUTS,
    ContrastBar,
    auto_levels,
    composite_rgb,
    lookup_table,
    stats_sample,
)


def fit_line(label: QLabel, variants: list[str]) -> str:
    """The first of ``variants`` (longest first) that fits ``label``'s width, else the last one elided
    at its left: the end of each variant (a position in µm) is what must show."""
    fm, room = label.fontMetrics(), max(label.contentsRect().width(), label.width()) - 2
    for text in variants:
        if fm.horizontalAdvance(text) <= room:
            return text
    return fm.elidedText(variants[-1], Qt.TextElideMode.ElideLeft, room)


def status_text(label: QLabel, cursor, value: float | None, phys, voxel, hover: str) -> str:
    """The view's two status lines: the cursor (value, "…" while being read, and µm position) and the mouse
    readout (or the voxel size), each shortened to fit ``label`` rather than clipped ("(72.51, 49.30, 55.10 µ")."""
    z, y, x = cursor
    um = f"({phys[0]:.2f}, {phys[1]:.2f}, {phys[2]:.2f} µm)"
    v = "…" if value is None else f"{value:.4g}"
    first = fit_line(label, [f"cursor z={z} y={y} x={x} = {v}  {um}", f"z={z} y={y} x={x} = {v}  {um}",
                             f"= {v} {um}", um])
    vox = f"voxel {voxel[0]:g} x {voxel[1]:g} x {voxel[2]:g} µm"
    if not hover:
        return f"{first}\n{fit_line(label, [vox])}"
    short = hover.replace(" px  value ", " = ").replace(" px  max ", " max ")
    return f"{first}\n{fit_line(label, [f'mouse {hover}   |   {vox}', f'mouse {hover}', short, short[short.rindex('('):]])}"


class DisplayMixin:
    """LUT, contrast and gamma of a view (see the module docstring for what the view provides)."""

    def _build_display(self, lut: str) -> tuple[QLabel, QToolButton]:
        """The LUT box, contrast bar and Auto button; returns the LUT label and the button for the bar."""
        self.lut = QComboBox(self)
        self.lut.addItems(LUTS)
        self.lut.setCurrentText(lut)
        self.lut.setToolTip("lookup table (colour map) of the display")
        self.lut.currentTextChanged.connect(self._apply_display)
        self.contrast = ContrastBar(self)
        self.contrast.levelsChanged.connect(self._apply_display)
        self.contrast.gammaChanged.connect(self._apply_display)
        self.lo, self.hi = self.contrast.lo, self.contrast.hi
        auto = QToolButton(self)
        auto.setText("Auto")
        auto.setToolTip(f"contrast from the {AUTO_PERCENTILES[0]}-{AUTO_PERCENTILES[1]} percentiles of the stack")
        auto.clicked.connect(self.auto_contrast)
        lut_label = QLabel("LUT", self)
        self._controls = [self.lut, lut_label, self.contrast, auto]
        return lut_label, auto

    def set_levels(self, lo: float, hi: float) -> None:
        self.contrast.set_levels(lo, hi)
        self._apply_display()

    def levels(self) -> tuple[float, float]:
        return self.contrast.levels()

    def gamma(self) -> float:
        return float(self.contrast.gamma.value())

    def set_gamma(self, gamma: float) -> None:
        self.contrast.gamma.setValue(gamma)

    def auto_contrast(self) -> None:
        if self.data is not None:
            self.set_levels(*auto_levels(self.data))

    def set_lut(self, name: str) -> None:
        self.lut.setCurrentText(name)

    def _apply_lut(self) -> None:
        if self.composite is not None:
            return
        table = lookup_table(self.lut.currentText(), self.gamma())
        levels = self.levels()
        for p in self.plane_items():  # only what changed: pyqtgraph renders the whole image again on each call
            if p.image.lut is not table:
                p.image.setLookupTable(table)
            if p.image.levels is None or not np.array_equal(np.asarray(p.image.levels, float), levels):
                p.image.setLevels(levels)

    def _apply_display(self, *_args) -> None:
        self._apply_lut()
        self.displayChanged.emit(self.lut.currentText(), *self.levels(), self.gamma())

    def follow(self, other) -> None:
        """Take LUT, contrast and gamma from ``other`` (controls shown but disabled, so both views
        keep the same size and their linked ranges map 1:1)."""
        for w in self._controls:
            w.setEnabled(False)
            w.setToolTip("follows the left view's display (change it there)")
        other.displayChanged.connect(self.set_display)

    def set_display(self, lut: str, lo: float, hi: float, gamma: float = 1.0) -> None:
        """Follow another view's LUT, contrast and gamma."""
        with QSignalBlocker(self.lut), QSignalBlocker(self.contrast.gamma):
            self.lut.setCurrentText(lut)
            self.contrast.gamma.setValue(gamma)
        self.set_levels(lo, hi)

    # ------------------------------------------------------------------ the displayed planes
    def planes(self) -> dict[str, np.ndarray]:
        """The three planes at the cursor as displayed: ``xy`` (Y, X), ``xz`` (Z, X), ``yz`` (Y, Z).

        Read now, in the calling thread; the view itself reads a file-backed stack's planes in the
        background (:meth:`planes_pending`)."""
        if self.data is None:
            return {}
        return self._planes_of(self.data, self._wipe)

    def _planes_of(self, data: np.ndarray, wipe: np.ndarray | None, cursor: tuple[int, int, int] | None = None,
                   stop=None, report=None) -> dict[str, np.ndarray] | None:
        """The planes at ``cursor``; None if ``stop()`` turns true between two plane reads. Without a wipe,
        ``report(planes)`` is given the XY, then the XY and XZ planes as soon as they are read."""
        z, y, x = cursor or self.cursor
        out = {}
        for key, cut in (("xy", (z,)), ("xz", (slice(None), y)), ("yz", (slice(None), slice(None), x))):
            out[key] = data[cut]
            if stop is not None and stop():
                return None
            if report is not None and wipe is None and key != "yz":
                report(dict(out))
        out["yz"] = out["yz"].T
        if wipe is not None:
            cut = int(round(self._wipe_fraction * data.shape[2]))
            xy, xz = out["xy"].copy(), out["xz"].copy()
            xy[:, cut:], xz[:, cut:] = wipe[z][:, cut:], wipe[:, y, cut:]
            out.update(xy=xy, xz=xz, yz=(wipe[:, :, x].T if x >= cut else out["yz"]))
        return out

    # ------------------------------------------------------------------ reading off the GUI thread
    def _init_planes(self) -> None:
        """What the view keeps about the planes and projection it shows (and reads in the background)."""
        self._mip: np.ndarray | None = None
        self._mip_shown: np.ndarray | None = None  # the projection array last given to its image
        self._plane_generation = 0  # bumped when the data or the wipe changes
        self._arrived: tuple | None = None  # (token, planes) from the loader
        self._settled: tuple | None = None  # token of the planes on screen (or whose read failed)
        self._loader: PlaneLoader | None = None
        self._mip_loader: PlaneLoader | None = None
        self._sample_loader: PlaneLoader | None = None
        self._partial: tuple[tuple, set] = ((), set())  # (token, planes of it already shown as they arrived)

    def _histogram_and_levels(self, levels: tuple[float, float] | None) -> None:
        """The contrast histogram and the display range (``levels``, else auto contrast) of new data.

        A stack in its file shown with given levels (a result beside its input) has its histogram's
        sample read in the background: up to :data:`isoapp.quality.planes.SAMPLE_SECONDS` of reads,
        which froze the window for 0.3-0.55 s as a block-wise run's OME-Zarr result was shown."""
        data = self.data
        if levels is not None and self._in_file():
            self.contrast.set_histogram(None)  # until the sample is read
            if self._sample_loader is None:
                self._sample_loader = PlaneLoader(self)
                self._sample_loader.done.connect(self._sample_arrived)
            self._sample_loader.request(id(data), lambda: (data, stats_sample(data)))
        else:
            self.contrast.set_histogram(data)
        self.set_levels(*(levels or auto_levels(data)))

    def _sample_arrived(self, _token: int, result: tuple) -> None:
        data, sample = result
        if data is self.data:
            self.contrast.set_histogram(sample)

    def _in_file(self) -> bool:
        """True when the shown stack (or the wiped-in one) is read from its file (a plane reader)."""
        return any(hasattr(a, "cached") for a in (self.data, self._wipe) if a is not None)

    def _cached(self, cursor: tuple[int, int, int]) -> bool:
        z, y, x = cursor
        keys = ((z,), (slice(None), y), (slice(None), slice(None), x))
        return all(a.cached(k) is not None for a in (self.data, self._wipe) if hasattr(a, "cached") for k in keys)

    def _plane_token(self) -> tuple:
        return (self._plane_generation, self.cursor)

    def _new_planes(self) -> None:
        """The data (or the wipe) changed: planes read for the old one are not shown."""
        self._plane_generation = self._plane_generation + 1
        self._arrived = None

    def _shown_planes(self) -> dict[str, np.ndarray] | None:
        """The planes at the cursor, or None while a file-backed stack's are read in the background."""
        if not self._in_file() or self._cached(self.cursor):
            return self.planes()
        if min(self.cursor) < 0:
            return None  # a stack being placed: its cursor is set next
        token = self._plane_token()
        arrived = self._arrived
        if arrived is not None and arrived[0] == token:
            return arrived[1]
        if self._loader is None:
            self._loader = PlaneLoader(self)
            self._loader.done.connect(self._planes_arrived)
            self._loader.failed.connect(self._planes_failed)
            self._loader.partial.connect(self._planes_partial)
        data, wipe, cursor, loader = self.data, self._wipe, self.cursor, self._loader
        loader.request(token, lambda: self._planes_of(data, wipe, cursor, stop=loader.superseded,
                                                      report=lambda part: loader.report(token, part)))
        return None

    def _planes_partial(self, token: tuple, planes: dict[str, np.ndarray]) -> None:
        """Show the planes read so far at the cursor (XY first: it is one contiguous read)."""
        if token != self._plane_token() or self.composite is not None:
            return
        shown = self._partial[1] if self._partial[0] == token else set()
        for key, p in (("xy", self.xy), ("xz", self.xz)):
            if key in planes and key not in shown:
                p.image.setImage(np.asarray(planes[key], np.float32), autoLevels=False, levels=self.levels())
                shown.add(key)
        self._partial = (token, shown)

    def _planes_arrived(self, token: tuple, planes: dict[str, np.ndarray]) -> None:
        if token[0] != self._plane_generation:
            return  # read for data no longer shown
        self._arrived = (token, planes)
        if token == self._plane_token():
            self._update_images()

    def _planes_failed(self, token: tuple, _message: str) -> None:
        self._settled = token  # the old planes stay (the loader logged why)

    def planes_pending(self) -> bool:
        """True until the planes at the cursor and the projection are shown (or their reads have failed)."""
        return self.data is not None and self.composite is None and (
            self._settled != self._plane_token() or self._mip is None)

    def _projection(self, data, wipe, fraction: float) -> np.ndarray:
        """The maximum along z (right of the wipe: the wiped-in stack's); may run in a background thread."""
        mip = data.max(axis=0)
        if wipe is not None:
            cut = int(round(fraction * data.shape[2]))
            mip = mip.copy()
            mip[:, cut:] = wipe.max(axis=0)[:, cut:]
        return mip

    def _mip_image(self) -> np.ndarray | None:
        """The projection shown; None while a file-backed stack's is made in the background (up to
        :data:`isoapp.quality.planes.MIP_SECONDS` of reads, which froze the window as a result was shown)."""
        if self._mip is None:
            if self._in_file():
                if self._mip_loader is None:
                    self._mip_loader = PlaneLoader(self)
                    self._mip_loader.done.connect(self._mip_arrived)
                    self._mip_loader.failed.connect(lambda token, _msg: self._mip_arrived(token, None))
                data, wipe, fraction = self.data, self._wipe, self._wipe_fraction
                self._mip_loader.request(self._plane_generation,
                                         lambda: self._projection(data, wipe, fraction))
                return None
            self._mip = self._projection(self.data, self._wipe, self._wipe_fraction)
            self._mip_titles()
        return self._mip

    def _mip_arrived(self, token: int, mip: np.ndarray | None) -> None:
        if token != self._plane_generation:
            return
        self._mip = mip if mip is not None else np.zeros(self.data.shape[1:], np.float32)
        self._mip_titles()
        self._update_images()

    def _mip_titles(self) -> None:
        n, nz = getattr(self.data, "mip_planes", 0), self.data.shape[0]  # a lazy stack projects a subset
        self.mip.set_titles(f"MIP of {n} of {nz} z planes" if 0 < n < nz else "MIP along z",
                            f"MIP {n}/{nz}" if 0 < n < nz else "MIP")

    def _place_images(self) -> None:
        nz, ny, nx = self.data.shape
        dz, dy, dx = self.voxel
        self._new_planes()
        if self.composite is None and self._in_file():
            # blank planes of the right shapes for now: the cursor's planes are read in the background
            for p, shape in ((self.xy, (ny, nx)), (self.xz, (nz, nx)), (self.yz, (ny, nz)), (self.mip, (ny, nx))):
                p.image.setImage(np.zeros(shape, np.float32), autoLevels=False, levels=self.levels())
        self._update_images()  # set the images first: setRect scales from the current image size
        self.xy.image.setRect(QRectF(0, 0, nx * dx, ny * dy))
        self.xz.image.setRect(QRectF(0, 0, nx * dx, nz * dz))
        self.yz.image.setRect(QRectF(0, 0, nz * dz, ny * dy))
        self.mip.image.setRect(QRectF(0, 0, nx * dx, ny * dy))
        self._split()  # room for each row/column in proportion to its physical extent
        self._fit_pending = True
        self.reset_view()  # right away (tests, visible views) and again once shown at a usable size
        self._fit_if_ready()

    def _rgb(self, key: str) -> np.ndarray:
        """A composite plane: every channel through its colour LUT, added and clipped."""
        planes = [self._planes_of(data, None)[key] for data, _lv, _t in self.composite]
        return composite_rgb(planes, [lv for _d, lv, _t in self.composite], [t for _d, _lv, t in self.composite])

    def _update_images(self) -> None:
        if self.data is None:
            return
        levels = self.levels()
        if self.composite is not None:
            for key, p in (("xy", self.xy), ("xz", self.xz), ("yz", self.yz)):
                p.image.setLookupTable(None)
                p.image.setImage(self._rgb(key), autoLevels=False, levels=(0, 255))
            self.mip.image.clear()
            self._mip_shown = None
        else:
            planes = self._shown_planes()  # None: read in the background, shown when read
            if planes is not None:
                token = self._plane_token()
                early = self._partial[1] if self._partial[0] == token and self._settled != token else set()
                for key, p in (("xy", self.xy), ("xz", self.xz), ("yz", self.yz)):
                    if key not in early:  # planes shown as they arrived are not drawn again
                        p.image.setImage(np.asarray(planes[key], np.float32), autoLevels=False, levels=levels)
                self._settled = token
            mip = self._mip_image()
            if mip is not None and self._mip_shown is not mip:  # set again, the 2048^2 image is rendered again
                self.mip.image.setImage(np.asarray(mip, np.float32), autoLevels=False, levels=levels)
                self._mip_shown = mip
            self._apply_lut()
        zc, yc, xc = self.cursor_physical()
        self.xy.vline.setPos(xc)
        self.xy.hline.setPos(yc)
        self.xz.vline.setPos(xc)
        self.xz.hline.setPos(zc)
        self.yz.vline.setPos(zc)
        self.yz.hline.setPos(yc)
        self._update_status()
