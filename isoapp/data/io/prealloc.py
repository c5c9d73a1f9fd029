"""Reserve the disk space of a memory-mapped output before writing into the map.

Writing into a memory map of a sparse file allocates disk blocks on the fly; when the disk is
full the kernel cannot, and the process dies of SIGBUS (exit 135) with no message and no
record of what was finished. :func:`preallocate` reserves every block of the file up front with
``posix_fallocate``: a full disk is then an :class:`~isoapp.core.errors.OutputError` that says how
much space is needed, before a single block is written, and writes into the map cannot fail for
lack of space. A block-wise run keeps its manifest, so it resumes once space is freed.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

from ...core.errors import OutputError

log = logging.getLogger(__name__)

_done: set[tuple[int, str, int]] = set()  # (pid, path, size) already reserved by this process


def _human(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def preallocate(path: str | os.PathLike, *, resume_hint: bool = False) -> None:
    """Reserve the disk blocks of the whole file ``path`` (once per process and size).

    Raises
    ------
    OutputError
        When the file system has not enough space: the message gives the space still needed and
        the space free.
    """
    path = Path(path)
    size = path.stat().st_size
    key = (os.getpid(), str(path), size)
    if key in _done or size == 0:
        return
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        allocated = os.fstat(fd).st_blocks * 512
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                try:
                    free = shutil.disk_usage(path.parent).free
                except OSError:
                    free = 0
                need = max(size - allocated, 0)
                then = "run again with --resume" if resume_hint else "run again"
                raise OutputError(f"not enough free space for the output {path.name} in {path.parent}: it needs about "
                                  f"{_human(need)} more but {_human(free)} is free; free some space and {then}") from exc
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            log.debug("%s: no fallocate on this file system (%s)", path, exc)
    finally:
        os.close(fd)
    _done.add(key)
