"""Atomic writes and the refusal to overwrite an input.

Every output is first written to a hidden temporary file (or folder, for Zarr) beside the
destination and then moved into place with :func:`os.replace`, so a crash, a full disk or a
cancelled run never leaves a half-written file under the user's chosen name, and an existing
file at that name stays untouched until the new one is complete. The temporary name records the
process id (``.isoapp-tmp-<pid>-<random>-<name>``), so the next run can remove what a killed run
left (:func:`isoapp.data.io.safety.clean_stale_temps`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ...core.errors import OutputError
from .names import check_name_length
from .owners import holding
from .registry import is_folder_format
from .safety import (
    TMP_PREFIX,
    check_collisions,
    check_replaceable,
    clean_stale_temps,
    remove_path,
    resolve_path,
    temp_path,
)

log = logging.getLogger(__name__)

__all__ = ["TMP_PREFIX", "atomic_path", "check_output_path"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """See :func:`_atomic_path`; holds this process's owner record in the folder meanwhile."""
    with holding(Path(path).parent), _atomic_path(path) as tmp:
        yield tmp


@contextmanager
def _atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the destination's folder; move it onto ``path`` on success.

    The temporary name keeps the destination's extension (``.isoapp-tmp-<pid>-<random>-<name>``).
    Whatever the body writes there (a file, or a folder for Zarr) replaces ``path`` only when
    the body finishes without an exception; otherwise it is deleted and ``path`` is left as it
    was. An existing folder is replaced only if it holds nothing but what isoapp's Zarr writer
    creates; it is moved aside and removed only after the new one is in place.

    Raises
    ------
    OutputError
        If the existing folder holds other files, or the finished output cannot be moved into place.
    """
    path = Path(path)
    clean_stale_temps(path.parent)
    tmp = temp_path(path)
    try:
        yield tmp
    except BaseException:
        remove_path(tmp)
        raise
    if not tmp.exists():
        raise OutputError(f"nothing was written for {path}; the writer produced no file")
    try:
        if path.is_dir() and not path.is_symlink():
            check_replaceable(path, overwrite=True, zarr=True)
    except BaseException:
        remove_path(tmp)
        raise
    try:
        if path.exists() and not path.is_symlink() and (path.is_dir() or tmp.is_dir()):
            backup = temp_path(path, "old-")
            os.replace(path, backup)
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(backup, path)
                raise
            remove_path(backup)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        remove_path(tmp)
        raise OutputError(f"could not move the finished output onto {path}: {exc.strerror or exc}; "
                          "check that the file is not open in another program and try again") from exc
    log.debug("moved %s -> %s", tmp.name, path)


def check_output_path(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                      overwrite: bool = True) -> Path:
    """Check that ``output`` may be written and return it as an absolute path.

    Parameters
    ----------
    output
        The requested output path.
    inputs
        Input files of the run (``None`` entries are ignored). The output must not resolve to
        any of them (symbolic and hard links included), lie inside an input folder, or contain
        an input (a ``.zarr`` output folder that holds the input would be replaced).
    overwrite
        Allow replacing an existing output (never a folder holding files isoapp did not write).

    Raises
    ------
    OutputError
        If the output would overwrite or contain an input, already exists (without
        ``overwrite``), or its folder does not exist.
    """
    resolved = resolve_path(output)
    check_collisions(resolved, [("input", p) for p in inputs])
    check_name_length(resolved)
    if not resolved.parent.is_dir():
        raise OutputError(f"the output folder {resolved.parent} does not exist; "
                          "create it first or choose another -o path")
    check_replaceable(resolved, overwrite=overwrite, zarr=is_folder_format(resolved))
    return resolved
