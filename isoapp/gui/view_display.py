"""The display of an :class:`isoapp.gui.orthoview.OrthoView`: lookup table, contrast limits over a
histogram, gamma, auto contrast, and following another view's display (before/after in Compare).

A mixin (kept apart so each module stays small): it builds the LUT box, the contrast bar and the
Auto button, and maps the displayed planes through them; the view supplies ``plane_items()``,
``data``, ``composite`` and the ``displayChanged`` signal.
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import QComboBox, QLabel, QToolButton

from .view_tools import AUTO_PERCENTILES, LUTS, ContrastBar, auto_levels, lookup_table


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
