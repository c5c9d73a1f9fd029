"""Send to Fiji: calibrated images into a Fiji/ImageJ that stays, Orthogonal Views, SNT, deconvolution.

Images go to a separate ImageJ/Fiji program through :class:`fiji_bridge.external.Handoff`: the
one the user runs receives them (ImageJ's single-instance listener), else ImageJ starts with its
main window as its own process; either way it survives isoapp quitting, and sending the same
result again selects its window instead of opening a duplicate. Actions that need a plugin (SNT,
DeconvolutionLab2) check for it before anything is sent. The in-process bridge
(:func:`fiji_bridge.connect`, headless) is only used to read Bio-Formats files. Every failure is
a dialog; when no ImageJ can start, the ``doctor`` report is shown with it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QMenu, QWidget

from ..core.errors import IsoappError
from ..core.volume import Volume
from ..quality.planes import channel_view
from . import dialogs
from .settings import AppSettings

log = logging.getLogger(__name__)


def bridge():
    """The :mod:`fiji_bridge` module, or an IsoappError saying it is not installed."""
    try:
        import fiji_bridge
    except ImportError as exc:
        raise IsoappError(f"the Fiji bridge cannot be imported ({exc}); reinstall isoapp with the "
                          "'fiji' extra: pip install 'isoapp[fiji]'") from exc
    if not hasattr(fiji_bridge, "connect"):
        raise IsoappError("this isoapp build has no Fiji bridge (fiji_bridge.connect is missing)")
    return fiji_bridge


def doctor_text(fiji_dir: str | None) -> str:
    """The bridge's diagnosis of the Java / ImageJ / Fiji setup as text."""
    try:
        fb = bridge()
    except IsoappError as exc:
        return str(exc)
    report = fb.doctor(fiji_dir or None)
    fmt = getattr(fb, "format_doctor", None)
    return fmt(report) if fmt is not None else "\n".join(f"{k}: {v}" for k, v in report.items())


def add_display_range(path, vol: Volume, levels: tuple[float, float] | None = None) -> tuple[float, float] | None:
    """Write the stack's display range into an ImageJ TIFF's description (``min=``/``max=``).

    ImageJ otherwise takes a float (or 16-bit) stack's display range from its first slice, so a
    restored stack whose first slice is dim opened saturated. The range is ``levels`` (one range
    for stacks compared side by side) or isoapp's Auto contrast (0.5-99.8th percentiles) of a
    bounded, strided sample of the whole stack. None when not written (not an ImageJ TIFF, or 8-bit).
    """
    from ..data.levels import auto_levels, write_display_range

    lo, hi = levels if levels is not None else auto_levels(np.asarray(vol.data))
    return (lo, hi) if write_display_range(path, lo, hi) else None


class FijiActions(QObject):
    """The Fiji menu. ``context()`` returns the current ``input``, ``result`` and ``results`` volumes."""

    sent = Signal(str)  # what was done, for the status bar and tests

    def __init__(self, parent: QWidget, settings: AppSettings, context: Callable[[], dict[str, Any]]) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.settings = settings
        self.context = context
        self.session: Any = None
        self.handoff: Any = None
        self._last_imp: Any = None
        self.last_sent: Any = None  # the path of the last file handed to ImageJ
        self.menu = QMenu("F&iji", parent)
        self.actions: dict[str, QAction] = {}
        for key, text, slot in (
            ("push", "Send result to Fiji", self.push_result),
            ("push_input", "Send input to Fiji", self.push_input),
            ("ortho", "Orthogonal Views in Fiji", self.orthogonal_views),
            ("snt", "Open result in SNT", self.open_in_snt),
            ("deconv", "Compare with deconvolution", self.compare_with_deconvolution),
            (None, None, None),
            ("doctor", "Check Fiji setup (doctor)…", self.show_doctor),
        ):
            if key is None:
                self.menu.addSeparator()
                continue
            act = QAction(text, self)
            act.triggered.connect(lambda _checked=False, s=slot: self._guard(s))
            self.menu.addAction(act)
            self.actions[key] = act

    # ------------------------------------------------------------------ plumbing
    def _guard(self, fn: Callable[[], None]) -> None:
        QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            fn()
        except IsoappError as exc:
            QGuiApplication.restoreOverrideCursor()
            details = doctor_text(self.settings.fiji_dir) if self._is_setup_problem(exc) else ""
            dialogs.show_error(self.parent_widget, "Fiji", str(exc), details)
        except Exception as exc:  # noqa: BLE001 - a dialog, never a crash
            QGuiApplication.restoreOverrideCursor()
            dialogs.report_exception(self.parent_widget, "Fiji", exc)
        else:
            QGuiApplication.restoreOverrideCursor()

    @staticmethod
    def _is_setup_problem(exc: Exception) -> bool:
        try:
            fb = bridge()
        except IsoappError:
            return True
        return isinstance(exc, (fb.NoBackendError, fb.DisplayError))

    def connect_session(self) -> Any:
        """The in-process, headless bridge (used to read Bio-Formats files)."""
        if self.session is None:
            fb = bridge()
            log.info("starting Java to read through Fiji/ImageJ (this takes a few seconds)")
            self.session = fb.connect(backend="auto", fiji_dir=self.settings.fiji_dir or None, headless=True)
            log.info("connected: %r", self.session)
        return self.session

    def get_handoff(self) -> Any:
        """The hand-off to a separate ImageJ/Fiji (made on first use; follows the Fiji folder setting)."""
        bridge()
        from fiji_bridge.external import Handoff, find_launcher, which_display

        if which_display() is None:
            raise bridge().DisplayError("there is no display for ImageJ's windows (DISPLAY is not set); "
                                        "save the result and open it in Fiji instead")
        launcher = find_launcher(self.settings.fiji_dir or None)
        if self.handoff is None or self.handoff.launcher.argv != launcher.argv:
            self.handoff = Handoff(launcher)
        return self.handoff

    @staticmethod
    def result_key(vol: Volume) -> str:
        """Identifies a result's pixels and calibration, so a second send finds the first window."""
        h = hashlib.sha1(f"{vol.name}|{vol.shape}|{vol.voxel_size}|{vol.dtype}".encode())
        if vol.is_lazy:  # a stack in its file: the file and its time identify it
            h.update(f"{vol.path}|{vol.path.stat().st_mtime_ns if vol.path else ''}".encode())
            return h.hexdigest()
        data = np.asarray(vol.data)
        step = max(1, data.size // 65536)
        h.update(np.ascontiguousarray(data.reshape(-1)[::step]).tobytes())
        return h.hexdigest()

    def _volume(self, key: str) -> Volume:
        vol = self.context().get(key)
        if vol is None:
            what = "restored result (run a method first)" if key == "result" else "open stack"
            raise IsoappError(f"there is no {what} to send to Fiji")
        return vol

    def _send(self, vol: Volume, extra_macro: str = "", levels: tuple[float, float] | None = None) -> Any:
        """Write ``vol`` once as a calibrated ImageJ TIFF and show it in the lasting ImageJ/Fiji (``levels``: its
        display range, shared with the stacks it is compared with; default its own auto contrast)."""
        from ..data.io import write_volume

        handoff = self.get_handoff()
        if vol.is_lazy:  # too large to copy into a TIFF: ImageJ reads the file itself, plane by plane
            return self._send_file(handoff, vol, extra_macro, levels)
        path, new = handoff.file_for(self.result_key(vol), vol.name)
        if new:
            write_volume(vol, path)
        if new or levels is not None:
            add_display_range(path, vol, levels)
        proc = handoff.show(path, extra_macro)
        self.last_sent = path
        dz, dy, dx = vol.voxel_size
        msg = f"sent {vol.name} to {handoff.launcher.kind} ({dz:g} x {dy:g} x {dx:g} µm)"
        log.info("%s", msg)
        self.sent.emit(msg)
        return proc

    def _send_file(self, handoff: Any, vol: Volume, extra_macro: str,
                   levels: tuple[float, float] | None) -> Any:
        """A stack left in its file goes to ImageJ as a virtual stack of that file, never copied: a classic
        TIFF by ImageJ, a BigTIFF/OME-TIFF by Bio-Formats, an OME-Zarr by Fiji's n5-ij (see
        :meth:`fiji_bridge.external.Handoff.show_file`), with isoapp's display range."""
        from ..data.levels import auto_levels, stats_sample

        path = vol.path
        if path is None:
            raise IsoappError(f"{vol.name} is too large to copy for ImageJ and has no file to open there; "
                              "save it (File > Save result) and open that file in Fiji")
        if levels is None and np.dtype(vol.dtype) != np.uint8:
            levels = auto_levels(stats_sample(channel_view(vol)))
        proc = handoff.show_file(path, extra_macro, levels, dataset=vol.metadata.get("dataset"))
        self.last_sent = path
        msg = f"sent {vol.name} to {handoff.launcher.kind} as a virtual stack of {path.name}"
        log.info("%s", msg)
        self.sent.emit(msg)
        return proc

    # ------------------------------------------------------------------ actions
    def push_result(self) -> None:
        self._send(self._volume("result"))

    def push_input(self) -> None:
        self._send(self._volume("input"))

    def orthogonal_views(self) -> None:
        self._send(self._volume("result"), 'run("Orthogonal Views");')
        self.sent.emit("orthogonal views opened")

    def open_in_snt(self) -> None:
        vol = self._volume("result")
        self.get_handoff().require("SNT", "Opening in SNT")  # before anything is sent
        self._send(vol, 'run("SNT...");')
        self.sent.emit("opened in SNT")

    def compare_with_deconvolution(self) -> None:
        ctx = self.context()
        inp, res = self._volume("input"), self._volume("result")
        rl = next((v for k, v in (ctx.get("results") or {}).items() if "Richardson" in k or k == "rl"), None)
        handoff = self.get_handoff()
        if rl is None:
            if not handoff.launcher.has_plugin("DeconvolutionLab2"):
                raise IsoappError("Compare with deconvolution needs a Richardson–Lucy result: run the "
                                  "'Richardson–Lucy deconvolution' method here first, or install DeconvolutionLab2 "
                                  "in Fiji. Nothing was sent.")
        from ..data.levels import joint_levels

        shown = [v for v in (inp, rl, res) if v is not None]
        levels = joint_levels(*(channel_view(v) if v.is_lazy else np.asarray(v.data) for v in shown))  # one display range: comparable at a glance
        for vol in shown:
            self._send(vol, levels=levels)
        self._send(res, 'run("Tile");', levels=levels)
        msg = "compared " + ", ".join(v.name for v in (inp, rl, res) if v is not None) + f" in {handoff.launcher.kind}"
        self.sent.emit(msg)
        if rl is None:
            dialogs.show_info(self.parent_widget, "Compare with deconvolution",
                              "Input and restored stacks are in Fiji; run DeconvolutionLab2 there "
                              "(Plugins > DeconvolutionLab2) on the input to add the Richardson–Lucy result.")

    def show_doctor(self) -> None:
        dialogs.show_info(self.parent_widget, "Fiji setup", "Java / ImageJ / Fiji as found by isoapp:",
                          doctor_text(self.settings.fiji_dir))

    def close(self) -> None:
        if self.session is not None:
            try:
                self.session.close()
            except Exception as exc:  # noqa: BLE001 - closing must not fail the window
                log.warning("closing the Fiji session: %s", exc)
            self.session = None
