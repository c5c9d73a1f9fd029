"""The napari dock widget: restore the selected image layer in a napari thread worker.

The layer's scale is taken as its voxel size in µm (z, y, x), so the anisotropy factor is
``scale_z / scale_xy`` (editable for layers without calibration). The restored layer gets the
scale ``(dz / F, dy, dx)`` and the input's translation, so both overlay in world coordinates.
Work runs in ``napari.qt.threading.create_worker``; core events cross to the GUI thread through
a Qt signal of a relay object (the worker never touches widgets), and Cancel sets the flag that
the core's ``should_stop`` polls. Qt comes from napari's binding (qtpy), never from isoapp.gui.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    SpinBox,
    TupleEdit,
    create_widget,
)
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

log = logging.getLogger(__name__)



class _Relay(QObject):
    """Carries core events from the worker thread to the GUI thread (queued connection)."""

    event = Signal(object)


def factor_from_scale(scale) -> float:
    """``dz / mean(dy, dx)`` from a layer's ``(.., z, y, x)`` scale."""
    sz, sy, sx = (float(v) for v in tuple(scale)[-3:])
    return sz / (0.5 * (sy + sx))


def psf_kinds() -> tuple[str, ...]:
    """The PSF choices, as the CLI and the GUI offer them (isoapp.run.resolve.PSF_KINDS)."""
    from ..run.resolve import PSF_KINDS

    return PSF_KINDS


def method_choices() -> list[str]:
    """Registered methods in their ``napari_rank`` order (``auto`` and ``isonet`` first), then by name."""
    from ..methods import available_methods, get_method

    return sorted(available_methods(), key=lambda n: (get_method(n).napari_rank, n))


def restore_job(data: np.ndarray, voxel_size: tuple[float, float, float], name: str, method: str, preset: str,
                factor: float, psf: dict, steps: int | None, emit, should_stop) -> dict:
    """Run :func:`isoapp.run.restore.restore` (in the worker thread).

    Returns ``{"data", "voxel_size"}``, or ``{"cancelled": message}`` / ``{"error": message}`` for a
    stop request or a user error (napari 0.9's worker-status handler breaks on ``errored``, so
    expected outcomes are returned; only internal bugs raise).
    """
    from ..core.errors import Cancelled, IsoappError
    from ..core.volume import Volume
    from ..run.restore import restore

    try:
        vol = Volume(np.asarray(data, dtype=np.float32), axes="ZYX", voxel_size=voxel_size, name=name)
        res = restore(vol, method, preset=preset, factor=factor, psf=psf, steps=steps, emit=emit,
                      should_stop=should_stop)
    except Cancelled as exc:
        return {"cancelled": str(exc)}
    except IsoappError as exc:
        return {"error": str(exc)}
    return {"data": res.volume.data, "voxel_size": tuple(res.volume.voxel_size)}


class RestoreWidget(QWidget):
    """Image layer, method, preset, PSF and factor; Run / Cancel with a progress bar."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        import napari

        self.viewer = napari_viewer
        self.worker = None
        self.restored = None
        self._scale_factor: float | None = None
        self._stop = threading.Event()
        self._relay = _Relay()
        self._relay.event.connect(self._on_event)
        self.layer = create_widget(annotation=napari.layers.Image, label="image")
        self.method = ComboBox(label="method", choices=method_choices())
        self.preset = ComboBox(label="preset", choices=["fast", "balanced", "quality"], value="fast")
        self.psf_kind = ComboBox(label="PSF", choices=list(psf_kinds()), value="auto")
        self.psf_fwhm = TupleEdit(label="FWHM z y x (µm)", value=(1.0, 0.3, 0.3),
                                  options={"min": 0.0, "max": 1000.0, "step": 0.01})
        self.psf_optics = LineEdit(label="optics", value="widefield,na=1.0,wavelength=0.52,n=1.33",
                                   tooltip="KIND,na=NA,wavelength=UM[,n=INDEX][,excitation=UM][,sheet_na=NA]"
                                           "[,pinhole=AU]: the diffraction PSF of an ideal objective")
        self.psf_file = FileEdit(label="PSF file", mode="r")
        self.factor = FloatSpinBox(label="factor (dz/dxy)", min=1.0, max=64.0, step=0.01, value=1.0)
        self.steps = SpinBox(label="steps (0: preset)", min=0, max=1_000_000, value=0)
        self.form = Container(widgets=[self.layer, self.method, self.preset, self.psf_kind, self.psf_fwhm,
                                       self.psf_optics, self.psf_file, self.factor, self.steps])
        self.run_button = QPushButton("Restore")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.form.native)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.layer.changed.connect(self._on_layer)
        self.method.changed.connect(self._update_visibility)
        self.psf_kind.changed.connect(self._update_visibility)
        self.reset_choices()
        self._update_visibility()

    # ------------------------------------------------------------------ form
    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        self.form.reset_choices()
        self._on_layer()

    def _on_layer(self, *_: Any) -> None:
        layer = self.layer.value
        self._scale_factor = None
        if layer is not None and layer.ndim >= 3:
            self._scale_factor = factor_from_scale(layer.scale)
            self.factor.value = max(1.0, self._scale_factor)

    def current_factor(self) -> float:
        """The factor from the layer's scale, unless the user typed another one."""
        exact = self._scale_factor
        shown = float(self.factor.value)
        return exact if exact is not None and abs(shown - exact) < 0.006 else shown

    def _update_visibility(self, *_: Any) -> None:
        from ..methods import get_method

        uses_psf = get_method(self.method.value).uses_psf if self.method.value else False
        self.psf_kind.visible = uses_psf
        self.psf_fwhm.visible = uses_psf and self.psf_kind.value == "gaussian"
        self.psf_optics.visible = uses_psf and self.psf_kind.value == "optical"
        self.psf_file.visible = uses_psf and self.psf_kind.value == "file"

    def psf_spec(self) -> dict:
        from ..run.resolve import psf_spec

        return psf_spec(self.psf_kind.value, fwhm_um=self.psf_fwhm.value, optics=self.psf_optics.value,
                        path=self.psf_file.value, where="optics")

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        """Start restoring the selected layer in a thread worker."""
        from napari.qt.threading import create_worker

        from ..core.errors import ConfigError

        layer = self.layer.value
        if self.worker is not None:
            return
        if layer is None:
            self._say("choose an image layer first")
            return
        if layer.ndim != 3 or layer.rgb:
            self._say(f"{layer.name} has {layer.ndim} dimensions; a single-channel 3D (z, y, x) layer is needed "
                      "(open channels as separate layers)")
            return
        factor = self.current_factor()
        if factor <= 1.0:
            self._say("the factor is 1: set the layer's scale to its voxel size (z, y, x) or type the factor")
            return
        try:
            psf = self.psf_spec()
        except ConfigError as exc:
            self._say(str(exc))
            return
        scale = tuple(float(v) for v in layer.scale)
        self._stop.clear()
        self.progress.setRange(0, 0)
        self._say(f"restoring {layer.name} with {self.method.value} (x{factor:.4g})")
        method = self.method.value
        worker = create_worker(restore_job, layer.data, scale, layer.name, method, self.preset.value,
                               factor, psf, self.steps.value or None,
                               self._relay.event.emit, self._stop.is_set, _progress=False, _start_thread=False,
                               _connect={"returned": lambda res, src=layer: self._on_done(res, src, method, factor),
                                         "errored": self._on_error, "finished": self._on_finished})
        self.worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker.start()

    def cancel(self) -> None:
        """Ask the running restoration to stop (it checkpoints and raises Cancelled)."""
        if self.worker is not None:
            self._stop.set()
            self._say("cancelling...")

    # ------------------------------------------------------------------ worker callbacks (GUI thread)
    def _on_event(self, ev: Any) -> None:
        from ..training.events import ProgressEvent, StageEvent

        if isinstance(ev, ProgressEvent) and ev.total > 0:
            self.progress.setRange(0, int(ev.total))
            self.progress.setValue(int(ev.step))
            self.progress.setFormat(f"{ev.stage} %v/%m")
        elif isinstance(ev, StageEvent):
            self._say(ev.description or ev.stage)

    def _on_done(self, result: dict, src, method: str, F: float) -> None:
        if "cancelled" in result:
            self._say("cancelled")
            return
        if "error" in result:
            self._say(f"error: {result['error']}")
            return
        data, voxel_size = result["data"], result["voxel_size"]
        sz, sy, sx = (float(v) for v in src.scale)
        layer = self.viewer.add_image(data, name=f"{src.name} {method} x{F:.3g}", scale=(sz / F, sy, sx),
                                      translate=tuple(src.translate), colormap=src.colormap.name,
                                      contrast_limits=tuple(src.contrast_limits), metadata={"isoapp_factor": F,
                                                                                         "voxel_size_um": voxel_size})
        self._say(f"restored {src.name}: {data.shape[0]} planes, z step {sz / F:.4g}")
        self.restored = layer

    def _on_error(self, exc: BaseException) -> None:
        log.error("restoration failed", exc_info=exc)
        self._say(f"internal error: {type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if not self._stop.is_set() else 0)

    def _say(self, text: str) -> None:
        self.status.setText(text)
        log.info("%s", text)
