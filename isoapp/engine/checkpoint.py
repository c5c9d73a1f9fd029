"""Atomic checkpoint files, loaded with ``weights_only=True``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError

log = logging.getLogger(__name__)


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    The temporary name records the process id (``.isoapp-tmp-<pid>-...``) so that a later run
    removes it if this process is killed mid-write.
    """
    from ..io.safety import clean_stale_temps, temp_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_safe(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint or weights file with ``weights_only=True`` (no arbitrary code)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} does not exist; train a model first or point --model at a folder saved by isoapp")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt, truncated or not a torch file
        raise ModelError(f"{path} is not a readable isoapp weights/checkpoint file ({exc.__class__.__name__}); "
                         "delete it and train again") from exc
