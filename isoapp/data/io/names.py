"""File-name length: refuse a name the file system cannot hold before any work starts.

An output is first written under a temporary name that is longer than its own
(``.isoapp-tmp-<pid>-<token>-<n>-old-<name>``, :func:`isoapp.data.io.safety.temp_path`), and training
runs keep their checkpoints in ``<name>.isoapp-checkpoints``. A name that fits the file system
but not with these additions used to fail only at the end, after training ("File name too
long"); :func:`check_name_length` says so in the preflight.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from ...core.errors import OutputError

log = logging.getLogger(__name__)

#: What isoapp adds to an output's name: the temporary prefix with a 7-digit PID, the owner token,
#: a serial number and the "old-" tag of a replaced output, or the ".isoapp-checkpoints" suffix.
TEMP_OVERHEAD = len(".isoapp-tmp-") + 7 + 1 + 8 + 1 + 6 + 1 + len("old-")
FOLDER_OVERHEAD = len(".isoapp-checkpoints")


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing parent) holds."""
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        n = os.pathconf(p, "PC_NAME_MAX")
    except (OSError, ValueError):
        n = -1
    return n if n and n > 0 else 255


def check_name_length(path: str | os.PathLike, what: str = "-o", *, temp: bool = True) -> None:
    """OutputError if ``path``'s name (or a folder on the way) is too long, with isoapp's additions.

    Parameters
    ----------
    path
        The output path.
    what
        How messages name it (``-o``, ``--save-model``...).
    temp
        The output is written under a temporary name first (files and Zarr folders): its own name
        plus :data:`TEMP_OVERHEAD` must fit. Folders isoapp fills (``--work-dir``) need only fit.
    """
    path = Path(path)
    limit = name_max(path.parent)
    for part in path.parent.parts:
        if len(part.encode("utf-8", "surrogateescape")) > limit:
            raise OutputError(f"the folder name {part[:40]}... in {what} is longer than the {limit} bytes this file "
                              f"system allows; choose a shorter path")
    n = len(path.name.encode("utf-8", "surrogateescape"))
    extra = max(TEMP_OVERHEAD, FOLDER_OVERHEAD) if temp else 0
    if n + extra > limit:
        room = limit - extra
        raise OutputError(f"the {what} name {path.name[:40]}... is {n} bytes long; this file system allows {limit} "
                          f"bytes per name and isoapp needs {extra} more for its temporary files, so use a name of "
                          f"at most {room} bytes")


def is_name_too_long(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG
