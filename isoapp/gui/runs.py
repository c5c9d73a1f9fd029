"""Run folders that outlive the app: one checkpoint folder per run, with a ``run.json`` describing it.

A run's folder holds the training checkpoints (written by the core's ``train_loop``) and
``run.json``: the input file (and HDF5 dataset), the exact ``restore()`` options and a status.
File > Resume lists the folders of unfinished runs, so a run cancelled, stopped by quitting or
cut by a crash continues after a restart. A finished run's folder is removed.

The default root is per user and survives reboots (unlike the system temp folder):
``~/.local/share/isoapp/runs`` on Linux (``$XDG_DATA_HOME``), the platform's equivalent elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


def default_runs_dir() -> Path:
    """The per-user folder for run checkpoints (Qt's generic data location + ``isoapp/runs``)."""
    from PySide6.QtCore import QStandardPaths

    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
    return Path(base or Path.home() / ".local" / "share") / "isoapp" / "runs"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


@dataclass
class RunRecord:
    """What ``run.json`` says about one run folder."""

    work_dir: Path
    input_path: str | None
    dataset: str | None
    options: dict[str, Any]
    status: str
    started: float
    label: str

    @property
    def resumable(self) -> bool:
        """The input can be reopened and the folder holds at least one checkpoint."""
        return bool(self.input_path) and Path(self.input_path).exists() and any(self.work_dir.rglob("*.ckpt"))

    def title(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))
        name = Path(self.input_path).name if self.input_path else "(stack not from a file)"
        state = {"running": "interrupted"}.get(self.status, self.status)
        return f"{name}: {self.label}, {self.options.get('preset', '')} ({state} {when})"


def write_run(work_dir: str | os.PathLike, *, input_path: str | None, dataset: str | None,
              options: dict[str, Any], label: str, status: str = "running") -> Path:
    """Create or update ``run.json`` in ``work_dir`` (atomically)."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    path = work / RUN_FILE
    started = time.time()
    if path.exists():
        try:
            started = float(json.loads(path.read_text()).get("started", started))
        except (OSError, ValueError):
            pass
    opts = {k: v for k, v in options.items() if k not in ("resume", "work_dir", "preview_position")}
    record = {"input": input_path, "dataset": dataset, "options": _jsonable(opts), "label": label,
              "status": status, "started": started}
    tmp = path.with_name(RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return path


def set_status(work_dir: str | os.PathLike, status: str) -> None:
    path = Path(work_dir) / RUN_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    record["status"] = status
    tmp = path.with_name(RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def read_run(work_dir: str | os.PathLike) -> RunRecord | None:
    work = Path(work_dir)
    try:
        raw = json.loads((work / RUN_FILE).read_text())
        return RunRecord(work, raw.get("input"), raw.get("dataset"), dict(raw.get("options") or {}),
                         str(raw.get("status", "running")), float(raw.get("started", 0.0)),
                         str(raw.get("label") or raw.get("options", {}).get("method", "?")))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.debug("skipping %s: %s", work, exc)
        return None


def list_runs(root: str | os.PathLike) -> list[RunRecord]:
    """Unfinished runs under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [r for d in root.iterdir() if d.is_dir() and (r := read_run(d)) is not None]
    return sorted(found, key=lambda r: r.started, reverse=True)


def remove_run(work_dir: str | os.PathLike | None) -> None:
    if work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
