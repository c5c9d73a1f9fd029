"""The log panel and the logging handler that feeds it (from any thread)."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QFontDatabase, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

log = logging.getLogger(__name__)

LOGGER_NAMES = ("isoapp", "fiji_bridge")
MAX_LINES = 5000


class _Relay(QObject):
    record = Signal(str, str)  # level name, formatted text


class QtLogHandler(logging.Handler):
    """A logging handler that re-emits records as a Qt signal (thread-safe, queued)."""

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.relay = _Relay()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.relay.record.emit(record.levelname, self.format(record))
        except RuntimeError:  # the panel is gone (window closed)
            pass
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def install_handler(handler: QtLogHandler) -> None:
    """Attach ``handler`` to the isoapp and fiji_bridge loggers (INFO unless set lower)."""
    for name in LOGGER_NAMES:
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)


def remove_handler(handler: QtLogHandler) -> None:
    for name in LOGGER_NAMES:
        logging.getLogger(name).removeHandler(handler)


class LogPanel(QWidget):
    """Read-only log view with Clear and a level colour per line."""

    COLORS = {"WARNING": "#b36b00", "ERROR": "#c0392b", "CRITICAL": "#c0392b", "DEBUG": "#777777"}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        clear = QPushButton("Clear", self)
        clear.setToolTip("empty the log panel (messages are also printed to the terminal)")
        clear.clicked.connect(self.text.clear)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(clear)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.text)
        lay.addLayout(row)
        self.handler = QtLogHandler()
        self.handler.relay.record.connect(self.append)

    def append_event(self, level: str, message: str) -> None:
        """A core LogEvent relayed by the worker (level in any case)."""
        self.append(str(level).upper(), message)

    def append(self, level: str, message: str) -> None:
        from .dialogs import gui_wording

        message = gui_wording(message)
        color = self.COLORS.get(level)
        esc = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self.text.appendHtml(f'<span style="color:{color}">{esc}</span>' if color else esc)
        self.text.moveCursor(QTextCursor.MoveOperation.End)

    def lines(self) -> list[str]:
        return self.text.toPlainText().splitlines()
