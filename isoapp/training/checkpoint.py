"""Atomic checkpoint files, loaded with ``weights_only=True``."""

from __future__ import annotations

import logging
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..core.errors import ModelError, OutputError

log = logging.getLogger(__name__)


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    The temporary name records the process id (``.isoapp-tmp-<pid>-...``) so that a later run
    removes it if this process is killed mid-write.
    """
    from ..data.io.owners import holding
    from ..data.io.safety import clean_stale_temps, temp_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent)
    with holding(path.parent), _signals_deferred():  # a Ctrl-C mid-save would leave no checkpoint: take it
        tmp = temp_path(path)  # once the file is in place
        return _save(obj, path, tmp)


@contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM while a checkpoint is written (POSIX); they are delivered right after."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    old = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


def _save(obj: Any, path: Path, tmp: Path) -> Path:
    try:
        with open(tmp, "xb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError | RuntimeError):  # torch reports a full disk as RuntimeError
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _write_failure(path)
            raise OutputError(f"could not write {path} ({reason}); check free disk space and write permission "
                              "of the folder") from exc
        raise
    return path


def _write_failure(path: Path) -> str:
    """torch's own message for a failed write is cryptic ("enforce fail at inline_container.cc")."""
    try:
        if shutil.disk_usage(path.parent).free < 2**20:
            return "No space left on device"
    except OSError:
        pass
    return "the write failed"


def load_safe(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint or weights file with ``weights_only=True`` (no arbitrary code).

    Both kinds are dicts; any other content is refused with a ModelError.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} does not exist; train a model first or point --model at a folder saved by isoapp")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt, truncated or not a torch file
        raise ModelError(f"{path} is not a readable isoapp weights/checkpoint file ({exc.__class__.__name__}); "
                         "delete it and train again") from exc
    if not isinstance(obj, dict):  # isoapp saves dicts of state dicts; anything else is someone else's file
        raise ModelError(f"{path} holds a {type(obj).__name__}, not isoapp weights or a checkpoint; "
                         "delete it and train again")
    return obj
