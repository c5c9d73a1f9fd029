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

from .view_tools import AUTO_PERCENTILES, LUTS, ContrastBar, auto_levels, composite_rgb, lookup_table


def fit_line(label: QLabel, variants: list[str]) -> str:
    """The first of ``variants`` (longest first) that fits ``label``'s width, else the last one elided
    at its left: the end of each variant (a position in µm) is what must show."""
    fm, room = label.fontMetrics(), max(label.contentsRect().width(), label.width()) - 2
    for text in variants:
        if fm.horizontalAdvance(text) <= room:
            return text
    return fm.elidedText(variants[-1], Qt.TextElideMode.ElideLeft, room)


def status_text(label: QLabel, cursor, value: float, phys, voxel, hover: str) -> str:
    """The view's two status lines: the cursor (value and µm position) and the mouse readout (or the
    voxel size), each shortened to fit ``label`` rather than clipped ("(72.51, 49.30, 55.10 µ")."""
    z, y, x = cursor
    um = f"({phys[0]:.2f}, {phys[1]:.2f}, {phys[2]:.2f} µm)"
    first = fit_line(label, [f"cursor z={z} y={y} x={x} = {value:.4g}  {um}", f"z={z} y={y} x={x} = {value:.4g}  {um}",
                             f"= {value:.4g} {um}", um])
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
        for p in self.plane_items():
            p.image.setLookupTable(table)
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
        """The three planes at the cursor as displayed: ``xy`` (Y, X), ``xz`` (Z, X), ``yz`` (Y, Z)."""
        if self.data is None:
            return {}
        return self._planes_of(self.data, self._wipe)

    def _planes_of(self, data: np.ndarray, wipe: np.ndarray | None) -> dict[str, np.ndarray]:
        z, y, x = self.cursor
        out = {"xy": data[z], "xz": data[:, y, :], "yz": data[:, :, x].T}
        if wipe is not None:
            cut = int(round(self._wipe_fraction * data.shape[2]))
            xy, xz = out["xy"].copy(), out["xz"].copy()
            xy[:, cut:], xz[:, cut:] = wipe[z][:, cut:], wipe[:, y, cut:]
            out.update(xy=xy, xz=xz, yz=(wipe[:, :, x].T if x >= cut else out["yz"]))
        return out

    def _mip_image(self) -> np.ndarray:
        if self._mip is None:
            mip = self.data.max(axis=0)
            n, nz = getattr(self.data, "mip_planes", 0), self.data.shape[0]  # a lazy stack projects a subset
            self.mip.set_titles(f"MIP of {n} of {nz} z planes" if 0 < n < nz else "MIP along z",
                                f"MIP {n}/{nz}" if 0 < n < nz else "MIP")
            if self._wipe is not None:
                cut = int(round(self._wipe_fraction * self.data.shape[2]))
                mip = mip.copy()
                mip[:, cut:] = self._wipe.max(axis=0)[:, cut:]
            self._mip = mip
        return self._mip

    def _place_images(self) -> None:
        nz, ny, nx = self.data.shape
        dz, dy, dx = self.voxel
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
        else:
            planes = self.planes()
            for key, p in (("xy", self.xy), ("xz", self.xz), ("yz", self.yz)):
                p.image.setImage(np.asarray(planes[key], np.float32), autoLevels=False, levels=levels)
            self.mip.image.setImage(np.asarray(self._mip_image(), np.float32), autoLevels=False, levels=levels)
            self._apply_lut()
        zc, yc, xc = self.cursor_physical()
        self.xy.vline.setPos(xc)
        self.xy.hline.setPos(yc)
        self.xz.vline.setPos(xc)
        self.xz.hline.setPos(zc)
        self.yz.vline.setPos(zc)
        self.yz.hline.setPos(yc)
        self._update_status()
