"""The PSF fields of the method panel: where the PSF comes from (estimated, Gaussian FWHM, the microscope's
optics, a measured bead stack, or Nyquist), one page per choice.

A mixin (kept apart so each module stays small): the panel calls ``_build_psf()`` and provides
``_changed()``; :meth:`psf_spec` gives the settings through :func:`isoapp.run.resolve.psf_spec`, as the
CLI and napari do.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..data.io import registry
from ..run.resolve import psf_spec
from . import dialogs

log = logging.getLogger(__name__)

PSF_KINDS = (("auto", "Estimate from the stack"), ("gaussian", "Gaussian FWHM"),
             ("optical", "Microscope model"), ("file", "Measured PSF file"),
             ("nyquist", "Assume Nyquist (FWHM 2 voxels)"))
OPTICS = ("widefield", "confocal", "two-photon", "light-sheet")


def spin_box(lo: float, hi: float, value: float, decimals: int = 3, step: float = 0.1) -> QDoubleSpinBox:
    sb = QDoubleSpinBox()
    sb.setRange(lo, hi)
    sb.setDecimals(decimals)
    sb.setSingleStep(step)
    sb.setValue(value)
    return sb


class PsfFieldsMixin:
    """The PSF group box of :class:`~isoapp.gui.method_panel.MethodPanel` and the settings it gives."""

    def _build_psf(self) -> QGroupBox:
        box = QGroupBox("PSF", self)
        self.psf_kind = QComboBox(box)
        for key, label in PSF_KINDS:
            self.psf_kind.addItem(label, key)
        self.psf_kind.setToolTip("the microscope's point-spread function, for methods that take one")
        self.psf_stack = QStackedWidget(box)
        est = QLabel("blur and noise estimated from the stack; the estimate shows after the run", box)
        est.setWordWrap(True)
        self.psf_stack.addWidget(est)
        gw = QWidget(box)
        g = QHBoxLayout(gw)
        g.setContentsMargins(0, 0, 0, 0)
        self.fwhm = [spin_box(0.001, 100.0, v) for v in (1.0, 0.25, 0.25)]
        for axis, sb in zip("zyx", self.fwhm, strict=True):
            sb.setToolTip(f"PSF full width at half maximum along {axis} (µm)")
            g.addWidget(QLabel(axis, gw))
            g.addWidget(sb)
        g.addWidget(QLabel("µm", gw))
        self.psf_stack.addWidget(gw)
        ow = QWidget(box)
        o = QFormLayout(ow)
        o.setContentsMargins(0, 0, 0, 0)
        self.optics_kind = QComboBox(ow)
        self.optics_kind.addItems(OPTICS)
        self.na = spin_box(0.05, 1.7, 1.0, 2, 0.05)
        self.wavelength = spin_box(0.2, 2.0, 0.52, 3, 0.01)
        self.ri = spin_box(1.0, 1.6, 1.33, 3, 0.01)
        self.sheet_na = spin_box(0.01, 1.0, 0.1, 3, 0.01)
        self.excitation = spin_box(0.0, 2.0, 0.0, 3, 0.01)
        self.pinhole = spin_box(0.0, 10.0, 1.0, 2, 0.1)
        self.optics_kind.setToolTip("the kind of microscope, for a computed PSF")
        self.na.setToolTip("numerical aperture of the objective")
        self.wavelength.setToolTip("emission wavelength in µm")
        self.ri.setToolTip("refractive index of the immersion medium")
        self.sheet_na.setToolTip("numerical aperture of the light sheet (light-sheet only)")
        self.excitation.setToolTip("excitation wavelength in µm (0: the emission's; two-photon: twice it)")
        self.pinhole.setToolTip("pinhole diameter in Airy units (confocal only; 0: a point pinhole)")
        o.addRow("Microscope", self.optics_kind)
        o.addRow("NA", self.na)
        o.addRow("Emission λ (µm)", self.wavelength)
        o.addRow("Refractive index", self.ri)
        o.addRow("Sheet NA", self.sheet_na)
        o.addRow("Excitation λ (µm)", self.excitation)
        o.addRow("Pinhole (AU)", self.pinhole)
        self._optics_form = o
        self.optics_kind.currentTextChanged.connect(self._optics_rows)
        self._optics_rows(self.optics_kind.currentText())
        self.psf_stack.addWidget(ow)
        fw = QWidget(box)
        f = QHBoxLayout(fw)
        f.setContentsMargins(0, 0, 0, 0)
        self.psf_path = QLineEdit(fw)
        self.psf_path.setPlaceholderText("PSF stack (.tif, .h5)")
        browse = QPushButton("Browse…", fw)
        browse.setToolTip("choose a measured PSF (bead) stack")
        self.psf_path.setToolTip("a measured PSF (bead) stack in any format isoapp opens (TIFF, HDF5, OME-Zarr, "
                                 "Bio-Formats)")
        browse.clicked.connect(self._browse_psf)
        f.addWidget(self.psf_path, 1)
        f.addWidget(browse)
        self.psf_stack.addWidget(fw)
        self.psf_stack.addWidget(QLabel("FWHM = 2 z steps axially, 2 pixels laterally", box))  # nyquist
        self.psf_kind.currentIndexChanged.connect(self._psf_page)
        self._psf_page(0)
        lay = QVBoxLayout(box)
        lay.addWidget(self.psf_kind)
        lay.addWidget(self.psf_stack)
        return box

    def fill_optics(self, metadata: dict) -> dict | None:
        """Fill the Microscope model fields from a stack's OME metadata (``metadata['optics']``) when it gives
        enough for a PSF; returns the optics used, or None (the fields keep the user's values)."""
        from ..core.errors import ConfigError
        from ..physics.optics import optics_from_metadata

        if not metadata.get("optics"):
            return None
        try:
            optics = optics_from_metadata(metadata["optics"])
        except ConfigError as exc:
            log.info("the stack's metadata names some optics but not enough for a PSF: %s", exc)
            return None
        self.optics_kind.setCurrentText(optics["kind"])
        self.na.setValue(optics["na"])
        self.wavelength.setValue(optics["wavelength_um"])
        self.ri.setValue(optics["refractive_index"])
        self.excitation.setValue(optics.get("excitation_wavelength_um", 0.0))
        log.info("Microscope model filled from the file's metadata: %s, NA %g, emission %g µm, n %g (choose "
                 "'Microscope model' as the PSF to use it)", optics["kind"], optics["na"], optics["wavelength_um"],
                 optics["refractive_index"])
        return optics

    def _optics_rows(self, kind: str) -> None:
        """Show only the optics fields this kind of microscope uses."""
        for field, kinds in ((self.sheet_na, ("light-sheet",)), (self.pinhole, ("confocal",)),
                             (self.excitation, ("confocal", "two-photon", "light-sheet"))):
            self._optics_form.setRowVisible(field, kind in kinds)

    def _psf_page(self, index: int) -> None:
        """Show one PSF page; hidden pages take no room (a stacked widget sizes to its largest)."""
        for i in range(self.psf_stack.count()):
            page = self.psf_stack.widget(i)
            policy = QSizePolicy.Policy.Preferred if i == index else QSizePolicy.Policy.Ignored
            page.setSizePolicy(policy, policy)
        self.psf_stack.setCurrentIndex(index)
        self.psf_stack.adjustSize()

    def _browse_psf(self) -> None:
        path = dialogs.open_file(self, "Measured PSF", "", registry.open_filter())
        if path:
            self.psf_path.setText(path)
            self._changed()

    def psf_spec(self) -> dict[str, Any]:
        kind = self.psf_kind.currentData()
        optics = None
        if kind == "optical":
            optics = {"kind": self.optics_kind.currentText(), "na": self.na.value(),
                      "wavelength_um": self.wavelength.value(), "refractive_index": self.ri.value()}
            if optics["kind"] == "light-sheet":
                optics["sheet_na"] = self.sheet_na.value()
            if self.excitation.value() > 0:
                optics["excitation_wavelength_um"] = self.excitation.value()
            if optics["kind"] == "confocal":
                optics["pinhole_au"] = self.pinhole.value()
        return psf_spec(kind, fwhm_um=[sb.value() for sb in self.fwhm], optics=optics,
                        path=self.psf_path.text().strip() or None)
