"""isoapp's desktop app (PySide6 + pyqtgraph), the only part of isoapp that imports Qt.

``create_main_window()`` builds the window for scripts and tests; ``main()`` is the
``isoapp-gui`` entry point. Qt is imported only when one of them is called, so
``import isoapp.gui`` works (and ``isoapp gui --help`` runs) without PySide6.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..data.io import registry

log = logging.getLogger(__name__)

__all__ = ["create_main_window", "main"]


def _immortal_bools() -> None:
    """Make ``True``/``False``/``None`` immortal on CPython < 3.12, as CPython 3.12 itself does.

    PySide6 6.12 with pyqtgraph drops references to ``True`` that it never took (measured with
    ``sys.getrefcount(True)``: about 10 per cursor move, 5 per bare ``ViewBox.setRange``, 1 per bool
    signal into a Python slot). After enough interaction the count reaches zero and CPython aborts
    with "bool_dealloc: deallocating True or False" (a long session, or the GUI test suite). The
    singletons are never freed anyway; a huge reference count keeps it so.
    """
    if sys.version_info >= (3, 12) or getattr(_immortal_bools, "done", False):
        return
    import ctypes

    for b in (True, False, None):  # None too: a 2-minute auto run under Xvfb died in none_dealloc
        ctypes.c_ssize_t.from_address(id(b)).value += 1 << 40  # ob_refcnt, PyObject's first field
    _immortal_bools.done = True  # type: ignore[attr-defined]


def _app() -> Any:
    from PySide6.QtWidgets import QApplication

    _immortal_bools()
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(sys.argv[:1]))
        app.setOrganizationName("isoapp")
        app.setApplicationName("isoapp")
    return app


def create_main_window(settings: Any = None, path: str | os.PathLike | None = None) -> Any:
    """Create (but do not show) the main window; a QApplication is made if none exists.

    Parameters
    ----------
    settings
        An :class:`isoapp.gui.settings.AppSettings` (default: the user's QSettings, or the INI file
        named by ``$ISOAPP_GUI_SETTINGS``).
    path
        A stack to open right away.
    """
    _app()
    from .main_window import MainWindow
    from .worker import warm_up

    spent = warm_up()
    if spent:
        log.debug("torch warmed up in %.2f s", spent)

    window = MainWindow(settings)
    if path is not None:
        window.open_path(path)
    return window


def _excepthook(exc_type, exc, tb) -> None:
    """Unexpected exceptions in Qt slots become a dialog instead of a crash."""
    from . import dialogs

    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("isoapp.gui").error("unhandled error", exc_info=(exc_type, exc, tb))
    try:
        dialogs.report_exception(None, "isoapp", exc.with_traceback(tb))
    except Exception:  # noqa: BLE001 - last resort
        sys.__excepthook__(exc_type, exc, tb)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``isoapp-gui [FILE]`` entry point."""
    import argparse

    parser = argparse.ArgumentParser(prog="isoapp-gui", description="isoapp desktop app")
    parser.add_argument("file", nargs="?", help="a stack to open: " + registry.input_help())
    parser.add_argument("--debug", action="store_true", help="debug logging")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return run_app(args.file, debug=args.debug)


def run_app(path: str | None = None, debug: bool = False) -> int:
    """Show the main window (opening ``path``) and run the event loop."""
    try:
        app = _app()
    except ImportError as exc:
        print(f"isoapp-gui: error: PySide6 is not installed ({exc}); pip install 'isoapp[gui]'", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("isoapp", "fiji_bridge"):
        lg = logging.getLogger(name)
        if not lg.handlers:  # ``isoapp gui`` already configured logging
            lg.addHandler(handler)
        lg.setLevel(logging.DEBUG if debug else logging.INFO)
    sys.excepthook = _excepthook
    from ..core.memory import keep_freed_memory

    keep_freed_memory()  # restoration's large buffers are reused, not page-faulted in again
    window = create_main_window()
    window.show()
    if path:
        window.open_path(path)
    return int(app.exec())
