"""The method panel: method, preset, factor, PSF, steps, device, and an estimate before starting."""

from __future__ import annotations

import json
import logging
from typing import Any

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import IsoappError
from ..core.volume import Volume
from ..methods import available_methods, build_config, capabilities, default_method, get_method
from .estimate import Estimate, estimate, estimate_auto, timing_key
from .psf_fields import PsfFieldsMixin, spin_box

log = logging.getLogger(__name__)

def cuda_status() -> tuple[bool, str]:
    """(available, text) for the device selector."""
    import torch

    if torch.cuda.is_available():
        return True, f"CUDA available: {torch.cuda.get_device_name(0)}"
    return False, "CUDA not available: training runs on the CPU"


class MethodPanel(PsfFieldsMixin, QWidget):
    """Collects the options of one ``restore()`` call (see :meth:`options`)."""

    changed = Signal()
    voxelChanged = Signal(object)  # (z, y, x) µm typed by the user

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.volume: Volume | None = None
        self.timings: dict[str, dict] = {}
        self.last_estimate: Estimate | None = None
        form = QFormLayout()
        self.method = QComboBox(self)
        names = sorted(available_methods(), key=lambda n: (get_method(n).menu_rank, n))
        for name in names:
            cls = get_method(name)
            self.method.addItem(cls.label or name, name)
            self.method.setItemData(self.method.count() - 1, f"{cls.description} (id: {name})", 3)  # ToolTipRole
        self.set_method(default_method())
        self.method.setToolTip("the restoration method; hover an entry for what it does")
        self.description = QLabel(self)
        self.description.setWordWrap(True)
        self.preset = QComboBox(self)
        self.preset.addItems(["fast", "balanced", "quality"])
        self.preset.setToolTip("fast: minutes on a laptop CPU; balanced and quality: larger networks, "
                               "longer training (a GPU helps)")
        self.voxel = [spin_box(1e-4, 1e4, v, 4, 0.05) for v in (1.0, 1.0, 1.0)]
        vrow = QHBoxLayout()
        for axis, sb in zip("zyx", self.voxel, strict=True):
            sb.setToolTip(f"voxel size along {axis} in µm (from the file; edit it for uncalibrated stacks)")
            sb.setKeyboardTracking(False)
            # typed, not stepped: without arrow buttons four decimals fit the narrow dock of a 1366-px screen
            # (the arrow keys and the wheel still step it)
            sb.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
            vrow.addWidget(QLabel(axis, self))
            vrow.addWidget(sb, 1)
        self.voxel_note = QLabel(self)
        self.voxel_note.setWordWrap(True)
        self.factor = spin_box(1.0, 20.0, 4.0, 3, 0.5)
        self.factor.setToolTip("anisotropy factor F = dz/dxy: the restored stack has F times more z planes")
        self.factor_auto = QCheckBox("auto", self)
        self.factor_auto.setToolTip("auto: dz/dxy of the voxel size above; untick to type a factor")
        self.factor_auto.setChecked(True)
        self.factor_auto.toggled.connect(self._factor_auto_toggled)
        self.factor.setEnabled(False)
        self.factor.setSpecialValueText("—")  # no stack, no factor (not 4.000 next to 1 x 1 x 1)
        self._blank_factor(True)
        frow = QHBoxLayout()
        frow.addWidget(self.factor, 1)
        frow.addWidget(self.factor_auto)
        self.steps = QSpinBox(self)
        self.steps.setRange(0, 1_000_000)
        self.steps.setSpecialValueText("preset default")
        self.steps.setSingleStep(50)
        self.steps.setToolTip("training steps; 0 = the preset's default")
        self.preview_every = QSpinBox(self)
        self.preview_every.setRange(0, 100_000)
        self.preview_every.setValue(25)
        self.preview_every.setSpecialValueText("off")
        self.preview_every.setToolTip("steps between live previews of the restored XZ/YZ planes")
        self.device = QComboBox(self)
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setToolTip("where to train: auto uses a CUDA GPU when there is one")
        has_cuda, text = cuda_status()
        if not has_cuda:
            self.device.model().item(2).setEnabled(False)
        self.cuda_label = QLabel(text, self)
        self.cuda_label.setWordWrap(True)
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("random seed: the same seed and settings give the same result")
        self.params = QLineEdit(self)
        self.params.setPlaceholderText('method parameters as JSON, e.g. {"n_filters": 32}')
        self.params.setToolTip("advanced: method parameters as a JSON object (see the method's documentation)")
        self.option_box = QWidget(self)
        self.option_form = QFormLayout(self.option_box)
        self.option_form.setContentsMargins(0, 0, 0, 0)
        self.option_widgets: dict[str, QComboBox] = {}
        form.addRow("Method", self.method)
        form.addRow("", self.description)
        form.addRow("", self.option_box)
        form.addRow("Preset", self.preset)
        self.preset_note = QLabel(self)  # how the chosen preset departs from the method's paper
        self.preset_note.setWordWrap(True)
        self.preset_note.setToolTip("how this preset departs from the method's paper (also saved in config.json)")
        form.addRow("", self.preset_note)
        form.addRow("Voxel (µm)", vrow)
        form.addRow("", self.voxel_note)
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
        self.estimate_label.setToolTip("predicted from the method's time model, then from runs measured here")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(form)
        lay.addWidget(self.psf_box)
        lay.addStretch(1)
        for w in (self.method, self.preset, self.device, self.psf_kind, self.optics_kind):
            w.currentIndexChanged.connect(self._changed)
        for w in (self.factor, self.steps, self.seed, self.na, self.wavelength, self.ri, self.sheet_na,
                  self.excitation, self.pinhole, *self.fwhm):
            w.valueChanged.connect(self._changed)
        for sb in self.voxel:
            sb.valueChanged.connect(self._voxel_edited)
        self.factor_auto.toggled.connect(self._changed)
        self.params.editingFinished.connect(self._changed)
        self.psf_path.editingFinished.connect(self._changed)
        self._compact()
        self._changed()

    def _compact(self) -> None:
        """Explicit small minimum widths (a spin box's own hint fits its whole range): the panel then
        fits a narrow dock on a 1366-px screen instead of being cut at the right."""
        for w in self.findChildren(QAbstractSpinBox):
            w.setMinimumWidth(56)
        for w in self.findChildren(QLineEdit):
            if not isinstance(w.parent(), (QAbstractSpinBox, QComboBox)):
                w.setMinimumWidth(80)
        for w in self.findChildren(QComboBox):
            w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            w.setMinimumContentsLength(8)

    # ------------------------------------------------------------------ state
    def method_id(self) -> str:
        return str(self.method.currentData() or self.method.currentText())

    def set_method(self, name: str) -> None:
        """Select a method by id."""
        i = self.method.findData(name)
        if i >= 0:
            self.method.setCurrentIndex(i)

    def set_volume(self, volume: Volume | None) -> None:
        """A new stack: its voxel size, the factor from it (ticked again) and a PSF FWHM guess."""
        self.volume = volume
        self._blank_factor(volume is None)
        if volume is not None:
            dz, dy, dx = volume.voxel_size
            for sb, v in zip(self.voxel, (dz, dy, dx), strict=True):
                with QSignalBlocker(sb):
                    sb.setValue(v)
            calibrated = bool(volume.metadata.get("calibrated", True))
            self.voxel_note.setText("" if calibrated else
                                    "<span style='color:#b36b00'>The file has no voxel size: type it "
                                    "above (µm), or untick the factor and type it.</span>")
            self.voxel_note.setVisible(not calibrated)
            # a factor typed for the previous stack never carries over to this one
            with QSignalBlocker(self.factor_auto):
                self.factor_auto.setChecked(True)
            self.factor.setEnabled(False)
            self._sync_factor()
            for sb, v in zip(self.fwhm, (2 * dz, 2 * dy, 2 * dx), strict=True):
                sb.setValue(v)
            self.fill_optics(volume.metadata)
        self._changed()

    def _blank_factor(self, blank: bool) -> None:
        """Without a stack the factor shows "—" (its minimum, 0, reads as the special text)."""
        with QSignalBlocker(self.factor):
            self.factor.setMinimum(0.0 if blank else 1.0)
            if blank:
                self.factor.setValue(0.0)

    def voxel_size(self) -> tuple[float, float, float]:
        return tuple(float(sb.value()) for sb in self.voxel)  # type: ignore[return-value]

    def _sync_factor(self) -> None:
        if self.factor_auto.isChecked() and self.volume is not None:
            dz, dy, dx = self.voxel_size()
            with QSignalBlocker(self.factor):
                self.factor.setValue(min(max(dz / max(0.5 * (dy + dx), 1e-12), 1.0), 20.0))

    def _factor_auto_toggled(self, on: bool) -> None:
        self.factor.setEnabled(not on)
        self._sync_factor()

    def _voxel_edited(self, *_args) -> None:
        self._sync_factor()
        self.voxelChanged.emit(self.voxel_size())
        self._changed()

    def effective_factor(self) -> float:
        return float(self.factor.value())

    def option_values(self) -> dict[str, Any]:
        return {k: w.currentData() for k, w in self.option_widgets.items()}

    def _build_option_widgets(self, name: str) -> None:
        """One control per option the method declares (its ``options`` class attribute)."""
        old = self.option_values()
        while self.option_form.rowCount():
            self.option_form.removeRow(0)
        self.option_widgets.clear()
        for opt, spec in capabilities(name)["options"].items():
            box = QComboBox(self.option_box)
            for v in spec["choices"] or (spec["default"],):
                box.addItem(str(v), v)
            box.setCurrentIndex(max(box.findData(old.get(opt, spec["default"])), 0))
            box.setToolTip(spec["help"] or f"the method's {opt!r} option")
            box.currentIndexChanged.connect(self._changed)
            self.option_form.addRow(opt.replace("_", " ").capitalize(), box)
            self.option_widgets[opt] = box
        self.option_box.setVisible(bool(self.option_widgets))
        self._options_for = name

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
        """Keyword arguments for :func:`isoapp.run.restore.restore` (without volume/emit/should_stop).

        The factor and voxel size are always explicit: what the panel shows is what runs.
        """
        name = self.method_id()
        opts: dict[str, Any] = {
            "method": name, "preset": self.preset.currentText(),
            "factor": self.effective_factor(), "voxel_size": self.voxel_size(),
            "steps": self.steps.value() or None, "device": self.device.currentText(), "seed": self.seed.value(),
            "params": {**self.option_values(), **self.method_params()},
            "train": {"preview_every": self.preview_every.value()},
        }
        if get_method(name).uses_psf:
            opts["psf"] = self.psf_spec()
        return opts

    def problem(self) -> str:
        """Why the current settings cannot run ('' when they can)."""
        if self.volume is None:
            return "Open a stack first (File > Open, or drop a file on the window)."
        if self.effective_factor() <= 1.0:
            return ("The factor is 1: this stack looks isotropic. Type the voxel size (z step) above, or "
                    "untick the factor's 'auto' and type it.")
        m = get_method(self.method_id())
        if self.volume.is_lazy and not (m.block_capable or m.name == "auto"):
            from ..methods.base import block_methods, method_label

            able = ", ".join(method_label(n) for n in block_methods())
            return (f"{m.label or m.name} restores a stack in memory, and this one is too large for that: choose "
                    f"Auto or one that restores block by block ({able}), or raise Settings > Restore in memory "
                    "up to.")
        if m.uses_psf and self.psf_kind.currentData() == "file":
            from pathlib import Path

            path = self.psf_path.text().strip()
            if not path:
                return "Choose the measured PSF file (PSF > Browse…)."
            if not Path(path).is_file():
                return f"The PSF file {Path(path).name} does not exist."
        try:
            self.config()
        except IsoappError as exc:
            return str(exc)
        return ""

    def is_valid(self) -> bool:
        return not self.problem()

    def config(self):
        opts = self.options()
        return build_config(opts["method"], preset=opts["preset"], factor=opts["factor"],
                            voxel_size=opts["voxel_size"], steps=opts["steps"], params=opts["params"],
                            train=opts["train"])

    def _changed(self, *_args) -> None:
        name = self.method_id()
        cls = get_method(name)
        if getattr(self, "_options_for", None) != name:
            self._build_option_widgets(name)
        self.description.setText(cls.description)
        note = cls.presets.get(self.preset.currentText())
        self.preset_note.setText(f"Preset: {note.note}" if note is not None and note.note else "")
        self.preset_note.setVisible(bool(self.preset_note.text()))
        self.psf_box.setEnabled(cls.uses_psf)
        self.steps.setEnabled(cls.trainable)
        self.preview_every.setEnabled(cls.trainable)
        self.estimate_label.setText(self.estimate_text())
        self.changed.emit()

    def estimate(self) -> Estimate | None:
        """The estimate for the current settings (None without a stack or with invalid settings)."""
        if self.volume is None or self.effective_factor() <= 1.0:
            return None
        try:
            opts = self.options()
            cfg = self.config()
        except IsoappError:
            return None
        device = opts["device"]
        if device == "auto":
            device = "cuda" if cuda_status()[0] else "cpu"
        if opts["method"] == "auto":
            est = estimate_auto(cfg, self.volume.shape, device=device, timings=self.timings)
        else:
            key = timing_key(opts["method"], opts["preset"], device)
            est = estimate(cfg, self.volume.shape, cls=get_method(opts["method"]), device=device,
                           measured=self.timings.get(key))
        if est is not None and self.volume.is_lazy:
            est.blockwise = True
        return est

    def estimate_text(self) -> str:
        problem = self.problem()
        if problem:
            return f"<span style='color:#c0392b'>{problem}</span>"
        est = self.estimate()
        self.last_estimate = est
        return est.text() if est is not None else ""

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        return {"method": self.method_id(), "preset": self.preset.currentText(),
                "steps": self.steps.value(), "preview_every": self.preview_every.value(),
                "device": self.device.currentText(), "seed": self.seed.value(), "params": self.params.text(),
                "psf_kind": self.psf_kind.currentIndex(), "optics": self.optics_kind.currentText(),
                "na": self.na.value(), "wavelength": self.wavelength.value(), "ri": self.ri.value(),
                "excitation": self.excitation.value(), "pinhole": self.pinhole.value(),
                "psf_path": self.psf_path.text()}

    def restore_state(self, state: dict[str, Any]) -> None:
        try:
            if state.get("method") in available_methods():
                self.set_method(state["method"])
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
            self.excitation.setValue(float(state.get("excitation", 0.0)))
            self.pinhole.setValue(float(state.get("pinhole", 1.0)))
            self.psf_path.setText(str(state.get("psf_path", "")))
        except (TypeError, ValueError) as exc:
            log.warning("ignoring saved method settings: %s", exc)
        self._changed()
