"""Send to Fiji through :mod:`fiji_bridge`: push with calibration, Orthogonal Views, SNT, deconvolution.

The bridge is imported and connected on first use (starting Java takes a few seconds). Every
failure is shown as a dialog; when no backend can start, the ``doctor`` report is shown with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QMenu, QWidget

from ..errors import IsoappError
from ..volume import Volume
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


class FijiActions(QObject):
    """The Fiji menu. ``context()`` returns the current ``input``, ``result`` and ``results`` volumes."""

    sent = Signal(str)  # what was done, for the status bar and tests

    def __init__(self, parent: QWidget, settings: AppSettings, context: Callable[[], dict[str, Any]]) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.settings = settings
        self.context = context
        self.session: Any = None
        self._last_imp: Any = None
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
        return isinstance(exc, (fb.NoBackendError, fb.PluginMissingError, fb.DisplayError))

    def connect_session(self) -> Any:
        if self.session is None:
            fb = bridge()
            log.info("connecting to Fiji/ImageJ (starting Java, this takes a few seconds)")
            self.session = fb.connect(backend="auto", fiji_dir=self.settings.fiji_dir or None)
            log.info("connected: %r", self.session)
        return self.session

    def _volume(self, key: str) -> Volume:
        vol = self.context().get(key)
        if vol is None:
            what = "restored result (run Train & Restore first)" if key == "result" else "open stack"
            raise IsoappError(f"there is no {what} to send to Fiji")
        return vol

    def _push(self, vol: Volume, title: str | None = None) -> Any:
        session = self.connect_session()
        imp = session.push(vol, voxel_size=vol.voxel_size, title=title or vol.name,
                           show=not getattr(session, "headless", True))
        self._last_imp = imp
        dz, dy, dx = vol.voxel_size
        msg = f"sent {vol.name} to {session.backend} ({dz:g} x {dy:g} x {dx:g} µm)"
        log.info("%s", msg)
        self.sent.emit(msg)
        return imp

    # ------------------------------------------------------------------ actions
    def push_result(self) -> None:
        self._push(self._volume("result"))

    def push_input(self) -> None:
        self._push(self._volume("input"))

    def orthogonal_views(self) -> None:
        imp = self._push(self._volume("result"))
        self.session.orthogonal_views(imp)
        self.sent.emit("orthogonal views opened")

    def open_in_snt(self) -> None:
        imp = self._push(self._volume("result"))
        self.session.open_in_snt(imp)
        self.sent.emit("opened in SNT")

    def compare_with_deconvolution(self) -> None:
        ctx = self.context()
        inp, res = self._volume("input"), self._volume("result")
        rl = (ctx.get("results") or {}).get("rl")
        session = self.connect_session()
        cmp = session.compare_with_deconvolution(inp, rl, res)
        msg = cmp.message or f"compared {', '.join(cmp.images)} in {session.backend}"
        self.sent.emit(msg)
        if cmp.message:
            dialogs.show_info(self.parent_widget, "Compare with deconvolution",
                              cmp.message + ("" if rl is not None else
                                             "\n\nTip: run the 'rl' method here to include a "
                                             "Richardson-Lucy result."))

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
