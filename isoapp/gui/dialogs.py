"""Every dialog the app opens goes through a replaceable hook.

Tests (and scripts) swap a hook with :func:`set_hook` to answer a dialog without a user:
``error`` (message boxes for failures), ``info`` (long texts such as the Fiji doctor report),
``choose`` (pick one of several items, e.g. an HDF5 dataset), ``ask`` (a yes/no question, e.g.
quitting during a run), ``open_file``, ``open_dir`` and ``save_file`` (file dialogs).

Messages written for the command line name its flags; :func:`gui_wording` says where the same
setting is in the app, so no dialog or log line asks a GUI user to pass ``--voxel-size``.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QWidget

from ..core.errors import IsoappError

log = logging.getLogger(__name__)


def _qt_error(parent: QWidget | None, title: str, message: str, details: str = "") -> None:
    box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.exec()


def _qt_info(parent: QWidget | None, title: str, message: str, details: str = "") -> None:
    box = QMessageBox(QMessageBox.Icon.Information, title, message, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.exec()


def _qt_choose(parent: QWidget | None, title: str, label: str, items: Sequence[str]) -> str | None:
    item, ok = QInputDialog.getItem(parent, title, label, list(items), 0, False)
    return str(item) if ok else None


def _qt_ask(parent: QWidget | None, title: str, question: str) -> bool:
    answer = QMessageBox.question(parent, title, question,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def _qt_open_file(parent: QWidget | None, title: str, directory: str, filter_: str) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, title, directory, filter_)
    return path or None


def _qt_open_dir(parent: QWidget | None, title: str, directory: str) -> str | None:
    return QFileDialog.getExistingDirectory(parent, title, directory) or None


def _qt_save_file(parent: QWidget | None, title: str, directory: str, filter_: str) -> str | None:
    path, _ = QFileDialog.getSaveFileName(parent, title, directory, filter_)
    return path or None


HOOKS: dict[str, Callable[..., Any]] = {
    "error": _qt_error, "info": _qt_info, "choose": _qt_choose, "ask": _qt_ask,
    "open_file": _qt_open_file, "open_dir": _qt_open_dir, "save_file": _qt_save_file,
}
_DEFAULTS = dict(HOOKS)


def set_hook(name: str, fn: Callable[..., Any] | None) -> Callable[..., Any]:
    """Replace the hook ``name`` (``None`` restores the Qt dialog); returns the previous one."""
    if name not in _DEFAULTS:
        raise KeyError(f"unknown dialog hook {name!r}; one of {', '.join(_DEFAULTS)}")
    old = HOOKS[name]
    HOOKS[name] = fn if fn is not None else _DEFAULTS[name]
    return old


def reset_hooks() -> None:
    HOOKS.update(_DEFAULTS)


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> None:
    message = gui_wording(message)
    log.error("%s: %s", title, message)
    HOOKS["error"](parent, title, message, details)


def show_info(parent: QWidget | None, title: str, message: str, details: str = "") -> None:
    message = gui_wording(message)
    HOOKS["info"](parent, title, message, details)


def ask(parent: QWidget | None, title: str, question: str) -> bool:
    """A yes/no question; True for yes."""
    return bool(HOOKS["ask"](parent, title, question))


# command-line flags in core messages -> where the same setting lives in the app
GUI_WORDING = (
    (r"(pass |give |with )?--voxel-size( Z Y X)?", "type the voxel size in the Stack & method panel"),
    (r"(pass )?--psf-fwhm( Z Y X)?", "choose PSF > Gaussian FWHM"),
    (r"(pass )?--psf( FILE)?\b", "choose PSF > Measured PSF file"),
    (r"(pass )?--fiji-dir( DIR| /path/to/Fiji.app)?", "set the Fiji.app folder in File > Settings"),
    (r"(pass )?--factor( F| [0-9.]+)?", "untick the factor's 'auto' and type it"),
)


def gui_wording(message: str) -> str:
    """``message`` with command-line flags replaced by where the setting is in the app."""
    for pattern, text in GUI_WORDING:
        message = re.sub(pattern, text, message)
    return message


def choose(parent: QWidget | None, title: str, label: str, items: Sequence[str]) -> str | None:
    return HOOKS["choose"](parent, title, label, items)


def open_file(parent: QWidget | None, title: str, directory: str, filter_: str) -> str | None:
    return HOOKS["open_file"](parent, title, directory, filter_)


def open_dir(parent: QWidget | None, title: str, directory: str) -> str | None:
    return HOOKS["open_dir"](parent, title, directory)


def save_file(parent: QWidget | None, title: str, directory: str, filter_: str) -> str | None:
    return HOOKS["save_file"](parent, title, directory, filter_)


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """A user-facing message and (for unexpected errors) a traceback for the details box."""
    if isinstance(exc, IsoappError):
        return str(exc), ""
    if isinstance(exc, MemoryError):
        return "Out of memory. Choose the 'fast' preset, close other programs or restore a crop.", ""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (f"Unexpected error: {type(exc).__name__}: {exc}\n\nThe app is still usable; "
            "please report this with the details below."), details


def report_exception(parent: QWidget | None, title: str, exc: BaseException) -> None:
    """Show ``exc`` as an error dialog (never re-raises)."""
    message, details = describe_exception(exc)
    if details:
        log.debug("%s", details)
    show_error(parent, title, message, details)
