"""The method panel: method, preset, factor, PSF, steps, device, and an estimate before starting."""

from __future__ import annotations

import json
import logging
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..errors import IsoappError
from ..methods import available_methods, build_config, get_method
from ..volume import Volume
from . import dialogs
from .estimate import estimate, timing_key

log = logging.getLogger(__name__)

PSF_KINDS = (("auto", "Auto (Gaussian, Nyquist-sampled)"), ("gaussian", "Gaussian FWHM"),
             ("optical", "Microscope model"), ("file", "Measured PSF file"))
OPTICS = ("widefield", "confocal", "two-photon", "light-sheet")


def cuda_status() -> tuple[bool, str]:
    """(available, text) for the device selector."""
    import torch

    if torch.cuda.is_available():
        return True, f"CUDA available: {torch.cuda.get_device_name(0)}"
    return False, "CUDA not available: training runs on the CPU"


def _spin(lo: float, hi: float, value: float, decimals: int = 3, step: float = 0.1) -> QDoubleSpinBox:
    sb = QDoubleSpinBox()
    sb.setRange(lo, hi)
    sb.setDecimals(decimals)
    sb.setSingleStep(step)
    sb.setValue(value)
    return sb


class MethodPanel(QWidget):
    """Collects the options of one ``restore()`` call (see :meth:`options`)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.volume: Volume | None = None
        self.timings: dict[str, dict] = {}
        form = QFormLayout()
        self.method = QComboBox(self)
        for name in available_methods():
            self.method.addItem(name)
            self.method.setItemData(self.method.count() - 1, get_method(name).description, 3)  # ToolTipRole
        self.method.setCurrentText("isonet" if "isonet" in available_methods() else self.method.itemText(0))
        self.description = QLabel(self)
        self.description.setWordWrap(True)
        self.preset = QComboBox(self)
        self.preset.addItems(["fast", "balanced", "quality"])
        self.factor = _spin(1.01, 10.0, 4.0, 3, 0.5)
        self.factor_auto = QCheckBox("from metadata", self)
        self.factor_auto.setChecked(True)
        self.factor_auto.toggled.connect(lambda on: self.factor.setEnabled(not on))
        self.factor.setEnabled(False)
        frow = QHBoxLayout()
        frow.addWidget(self.factor, 1)
        frow.addWidget(self.factor_auto)
        self.steps = QSpinBox(self)
        self.steps.setRange(0, 1_000_000)
        self.steps.setSpecialValueText("preset default")
        self.steps.setSingleStep(50)
        self.preview_every = QSpinBox(self)
        self.preview_every.setRange(0, 100_000)
        self.preview_every.setValue(25)
        self.preview_every.setSpecialValueText("off")
        self.preview_every.setToolTip("steps between live previews of the restored XZ/YZ planes")
        self.device = QComboBox(self)
        self.device.addItems(["auto", "cpu", "cuda"])
        has_cuda, text = cuda_status()
        if not has_cuda:
            self.device.model().item(2).setEnabled(False)
        self.cuda_label = QLabel(text, self)
        self.cuda_label.setWordWrap(True)
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.params = QLineEdit(self)
        self.params.setPlaceholderText('method parameters as JSON, e.g. {"n_filters": 32}')
        form.addRow("Method", self.method)
        form.addRow("", self.description)
        form.addRow("Preset", self.preset)
        form.addRow("Factor (dz/dxy)", frow)
        form.addRow("Steps", self.steps)
        form.addRow("Preview every", self.preview_every)
        form.addRow("Device", self.device)
        form.addRow("", self.cuda_label)
        form.addRow("Seed", self.seed)
        form.addRow("Parameters", self.params)
        self.psf_box = self._build_psf()
        self.estimate_label = QLabel(self)
        self.estimate_label.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(form)
        lay.addWidget(self.psf_box)
        lay.addStretch(1)
        for w in (self.method, self.preset, self.device, self.psf_kind, self.optics_kind):
            w.currentIndexChanged.connect(self._changed)
        for w in (self.factor, self.steps, self.seed, self.na, self.wavelength, self.ri, self.sheet_na,
                  *self.fwhm):
            w.valueChanged.connect(self._changed)
        self.factor_auto.toggled.connect(self._changed)
        self.params.editingFinished.connect(self._changed)
        self.psf_path.editingFinished.connect(self._changed)
        self._changed()

    def _build_psf(self) -> QGroupBox:
        box = QGroupBox("PSF", self)
        self.psf_kind = QComboBox(box)
        for key, label in PSF_KINDS:
            self.psf_kind.addItem(label, key)
        self.psf_stack = QStackedWidget(box)
        self.psf_stack.addWidget(QLabel("FWHM = 2 z steps axially, 2 pixels laterally", box))
        gw = QWidget(box)
        g = QHBoxLayout(gw)
        g.setContentsMargins(0, 0, 0, 0)
        self.fwhm = [_spin(0.001, 100.0, v) for v in (1.0, 0.25, 0.25)]
        for axis, sb in zip("zyx", self.fwhm, strict=True):
            g.addWidget(QLabel(axis, gw))
            g.addWidget(sb)
        g.addWidget(QLabel("µm", gw))
        self.psf_stack.addWidget(gw)
        ow = QWidget(box)
        o = QFormLayout(ow)
        o.setContentsMargins(0, 0, 0, 0)
        self.optics_kind = QComboBox(ow)
        self.optics_kind.addItems(OPTICS)
        self.na = _spin(0.05, 1.7, 1.0, 2, 0.05)
        self.wavelength = _spin(0.2, 2.0, 0.52, 3, 0.01)
        self.ri = _spin(1.0, 1.6, 1.33, 3, 0.01)
        self.sheet_na = _spin(0.01, 1.0, 0.1, 3, 0.01)
        o.addRow("Microscope", self.optics_kind)
        o.addRow("NA", self.na)
        o.addRow("Emission λ (µm)", self.wavelength)
        o.addRow("Refractive index", self.ri)
        o.addRow("Sheet NA", self.sheet_na)
        self.psf_stack.addWidget(ow)
        fw = QWidget(box)
        f = QHBoxLayout(fw)
        f.setContentsMargins(0, 0, 0, 0)
        self.psf_path = QLineEdit(fw)
        self.psf_path.setPlaceholderText("PSF stack (.tif, .h5)")
        browse = QPushButton("Browse…", fw)
        browse.clicked.connect(self._browse_psf)
        f.addWidget(self.psf_path, 1)
        f.addWidget(browse)
        self.psf_stack.addWidget(fw)
        self.psf_kind.currentIndexChanged.connect(self._psf_page)
        self._psf_page(0)
        lay = QVBoxLayout(box)
        lay.addWidget(self.psf_kind)
        lay.addWidget(self.psf_stack)
        return box

    def _psf_page(self, index: int) -> None:
        """Show one PSF page; hidden pages take no room (a stacked widget sizes to its largest)."""
        for i in range(self.psf_stack.count()):
            page = self.psf_stack.widget(i)
            policy = QSizePolicy.Policy.Preferred if i == index else QSizePolicy.Policy.Ignored
            page.setSizePolicy(policy, policy)
        self.psf_stack.setCurrentIndex(index)
        self.psf_stack.adjustSize()

    def _browse_psf(self) -> None:
        path = dialogs.open_file(self, "Measured PSF", "", "Images (*.tif *.tiff *.h5 *.hdf5)")
        if path:
            self.psf_path.setText(path)
            self._changed()

    # ------------------------------------------------------------------ state
    def set_volume(self, volume: Volume | None) -> None:
        """Take the factor (and a PSF FWHM guess) from ``volume``'s voxel size."""
        self.volume = volume
        if volume is not None:
            dz, dy, dx = volume.voxel_size
            if self.factor_auto.isChecked() and volume.anisotropy > 1.0:
                self.factor.setValue(min(volume.anisotropy, 10.0))
            for sb, v in zip(self.fwhm, (2 * dz, 2 * dy, 2 * dx), strict=True):
                sb.setValue(v)
        self._changed()

    def psf_spec(self) -> dict[str, Any]:
        kind = self.psf_kind.currentData()
        if kind == "gaussian":
            return {"kind": "gaussian", "fwhm_um": [sb.value() for sb in self.fwhm]}
        if kind == "optical":
            optics = {"kind": self.optics_kind.currentText(), "na": self.na.value(),
                      "wavelength_um": self.wavelength.value(), "refractive_index": self.ri.value()}
            if optics["kind"] == "light-sheet":
                optics["sheet_na"] = self.sheet_na.value()
            return {"kind": "optical", "optics": optics}
        if kind == "file":
            return {"kind": "file", "path": self.psf_path.text().strip() or None}
        return {"kind": "auto"}

    def method_params(self) -> dict[str, Any]:
        text = self.params.text().strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise IsoappError(f"the method parameters are not valid JSON ({exc}); "
                              'write them like {"n_filters": 32}') from exc
        if not isinstance(value, dict):
            raise IsoappError('the method parameters must be a JSON object like {"n_filters": 32}')
        return value

    def options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`isoapp.restore.restore` (without volume/emit/should_stop)."""
        opts: dict[str, Any] = {
            "method": self.method.currentText(), "preset": self.preset.currentText(),
            "factor": None if self.factor_auto.isChecked() else self.factor.value(),
            "steps": self.steps.value() or None, "device": self.device.currentText(), "seed": self.seed.value(),
            "params": self.method_params(), "train": {"preview_every": self.preview_every.value()},
        }
        if get_method(opts["method"]).uses_psf:
            opts["psf"] = self.psf_spec()
        return opts

    def _changed(self, *_args) -> None:
        cls = get_method(self.method.currentText())
        self.description.setText(cls.description)
        self.psf_box.setEnabled(cls.uses_psf)
        self.steps.setEnabled(cls.trainable)
        self.preview_every.setEnabled(cls.trainable)
        self.estimate_label.setText(self.estimate_text())
        self.changed.emit()

    def estimate_text(self) -> str:
        if self.volume is None:
            return "Open a stack to see a time and memory estimate."
        try:
            opts = self.options()
            factor = opts["factor"] or self.volume.anisotropy
            cfg = build_config(opts["method"], preset=opts["preset"], factor=factor,
                               voxel_size=self.volume.voxel_size, steps=opts["steps"], params=opts["params"],
                               train=opts["train"])
        except IsoappError as exc:
            return f"<span style='color:#c0392b'>{exc}</span>"
        device = opts["device"]
        if device == "auto":
            device = "cuda" if cuda_status()[0] else "cpu"
        key = timing_key(opts["method"], opts["preset"], device)
        est = estimate(cfg, self.volume.shape, trainable=get_method(opts["method"]).trainable, device=device,
                       measured=self.timings.get(key))
        return est.text()

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        return {"method": self.method.currentText(), "preset": self.preset.currentText(),
                "steps": self.steps.value(), "preview_every": self.preview_every.value(),
                "device": self.device.currentText(), "seed": self.seed.value(), "params": self.params.text(),
                "psf_kind": self.psf_kind.currentIndex(), "optics": self.optics_kind.currentText(),
                "na": self.na.value(), "wavelength": self.wavelength.value(), "ri": self.ri.value(),
                "psf_path": self.psf_path.text()}

    def restore_state(self, state: dict[str, Any]) -> None:
        try:
            if state.get("method") in available_methods():
                self.method.setCurrentText(state["method"])
            self.preset.setCurrentText(state.get("preset", "fast"))
            self.steps.setValue(int(state.get("steps", 0)))
            self.preview_every.setValue(int(state.get("preview_every", 25)))
            if state.get("device") in ("auto", "cpu") or cuda_status()[0]:
                self.device.setCurrentText(state.get("device", "auto"))
            self.seed.setValue(int(state.get("seed", 0)))
            self.params.setText(str(state.get("params", "")))
            self.psf_kind.setCurrentIndex(int(state.get("psf_kind", 0)))
            self.optics_kind.setCurrentText(state.get("optics", "widefield"))
            self.na.setValue(float(state.get("na", 1.0)))
            self.wavelength.setValue(float(state.get("wavelength", 0.52)))
            self.ri.setValue(float(state.get("ri", 1.33)))
            self.psf_path.setText(str(state.get("psf_path", "")))
        except (TypeError, ValueError) as exc:
            log.warning("ignoring saved method settings: %s", exc)
        self._changed()
