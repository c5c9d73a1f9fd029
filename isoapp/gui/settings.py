"""Persistent GUI settings on top of :class:`QSettings`.

Values that are not plain strings (recent files, panel state, timing calibration) are stored
as JSON text so that every QSettings backend (registry, plist, INI) returns them unchanged.
``ISOAPP_GUI_SETTINGS=/path/file.ini`` redirects everything to an INI file (tests, demos).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

log = logging.getLogger(__name__)

MAX_RECENT = 10


class AppSettings:
    """Typed access to the application's QSettings."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        if qsettings is None:
            env = os.environ.get("ISOAPP_GUI_SETTINGS")
            qsettings = (QSettings(env, QSettings.Format.IniFormat) if env
                         else QSettings("isoapp", "isoapp"))
        self.qs = qsettings

    @classmethod
    def at_path(cls, path: str | os.PathLike) -> AppSettings:
        """Settings kept in an INI file at ``path``."""
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    # ------------------------------------------------------------------ generic
    def get_json(self, key: str, default: Any = None) -> Any:
        raw = self.qs.value(key, None)
        if raw in (None, ""):
            return default
        try:
            return json.loads(str(raw))
        except ValueError:
            log.warning("ignoring unreadable setting %s=%r", key, raw)
            return default

    def set_json(self, key: str, value: Any) -> None:
        self.qs.setValue(key, json.dumps(value))
        self.qs.sync()

    def get_str(self, key: str, default: str = "") -> str:
        raw = self.qs.value(key, default)
        return default if raw is None else str(raw)

    def set_str(self, key: str, value: str) -> None:
        self.qs.setValue(key, value)
        self.qs.sync()

    # ------------------------------------------------------------------ specific
    @property
    def recent_files(self) -> list[str]:
        value = self.get_json("recent_files", [])
        return [str(v) for v in value] if isinstance(value, list) else []

    def add_recent(self, path: str | os.PathLike, dataset: str | None = None) -> None:
        entry = str(Path(path).resolve()) + (f"::{dataset}" if dataset else "")
        items = [p for p in self.recent_files if p != entry]
        self.set_json("recent_files", [entry, *items][:MAX_RECENT])

    def clear_recent(self) -> None:
        self.set_json("recent_files", [])

    @property
    def fiji_dir(self) -> str:
        return self.get_str("fiji/dir", "")

    @fiji_dir.setter
    def fiji_dir(self, value: str) -> None:
        self.set_str("fiji/dir", value or "")

    @property
    def last_dir(self) -> str:
        return self.get_str("last_dir", str(Path.home()))

    @last_dir.setter
    def last_dir(self, value: str) -> None:
        self.set_str("last_dir", value)

    @property
    def work_root(self) -> Path:
        """Folder holding one checkpoint folder per run (default: per user, kept across restarts)."""
        from .runs import default_runs_dir

        value = self.get_str("work_root", "")
        return Path(value) if value else default_runs_dir()

    @work_root.setter
    def work_root(self, value: str | os.PathLike) -> None:
        self.set_str("work_root", str(value))

    @property
    def method_state(self) -> dict:
        value = self.get_json("method_panel", {})
        return value if isinstance(value, dict) else {}

    @method_state.setter
    def method_state(self, value: dict) -> None:
        self.set_json("method_panel", value)

    @property
    def memory_limit_mb(self) -> int:
        """Stacks whose in-memory restoration needs more than this are viewed from the file and restored
        block by block (0: half the free memory, the CLI's rule)."""
        try:
            return max(0, int(float(self.get_str("large/memory_limit_mb", "0") or 0)))
        except ValueError:
            return 0

    @memory_limit_mb.setter
    def memory_limit_mb(self, value: int) -> None:
        self.set_str("large/memory_limit_mb", str(int(value)))

    @property
    def memory_limit_bytes(self) -> int | None:
        return self.memory_limit_mb * 2**20 if self.memory_limit_mb else None

    @property
    def scheduler(self) -> str:
        """A Dask scheduler address (``tcp://host:8786``) for block-wise runs; empty: restore here."""
        return self.get_str("large/scheduler", "").strip()

    @scheduler.setter
    def scheduler(self, value: str) -> None:
        self.set_str("large/scheduler", (value or "").strip())

    def timing(self, key: str) -> dict | None:
        """Measured seconds per step / per output voxel of an earlier run (see ``estimate``)."""
        value = self.get_json(f"timing/{key}", None)
        return value if isinstance(value, dict) else None

    def set_timing(self, key: str, value: dict) -> None:
        self.set_json(f"timing/{key}", value)
