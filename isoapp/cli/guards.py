"""One-line errors and run locks for the command line.

* :func:`reword` gives an exception a new message without calling its ``__init__`` (whose
  signature may differ: ``BlockError(block, exc)``), so a resume hint can be added to any
  :class:`~isoapp.core.errors.IsoappError`.
* :func:`oserror_line` turns an :class:`OSError` that reached the top level (a full disk, a name
  too long, a permission, a link loop) into one line that says what to do.
* :func:`restore_lock_targets` lists the paths ``isoapp restore`` locks for its whole run (the
  output, the work folder, ``--save-model``): a second run on one of them refuses in one line.
"""

from __future__ import annotations

import argparse
import errno
import logging
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E", bound=BaseException)

_ADVICE = {
    errno.ENOSPC: "free some space (or choose another folder) and run again",
    errno.EDQUOT: "your disk quota is full; free some space and run again",
    errno.ENAMETOOLONG: "choose a shorter file name",
    errno.ELOOP: "check its symbolic links",
    errno.EACCES: "check the permissions of the file and its folder",
    errno.EPERM: "check the permissions of the file and its folder",
    errno.EROFS: "the disk is read-only; choose a folder you can write to",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "check the path: a part of it is a file, not a folder",
    errno.EISDIR: "give a file, not a folder",
    errno.EIO: "the disk or network file system reported an input/output error; check it and run again",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) and run again",
}


def reword(exc: E, message: str) -> E:
    """A copy of ``exc`` (same class and attributes) whose message is ``message``."""
    cls = type(exc)
    new = cls.__new__(cls)
    new.args = (message,)
    try:
        new.__dict__.update(getattr(exc, "__dict__", {}))
    except (AttributeError, TypeError):  # pragma: no cover - an exception without a __dict__
        pass
    return new


def oserror_line(exc: OSError) -> str:
    """One line for an OSError that reached the command line's top level."""
    what = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    advice = _ADVICE.get(exc.errno or -1, "check the path, its permissions and free disk space, then run again")
    return f"{what}{where}; {advice}"


def restore_lock_targets(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The paths an ``isoapp restore`` run writes, to lock for the whole run."""
    out = Path(args.output).expanduser().absolute()
    wd = getattr(args, "work_dir", None)
    targets = [("-o", out),
               ("--work-dir", Path(wd).expanduser().absolute() if wd else out.parent / f"{out.name}.isoapp-checkpoints")]
    if getattr(args, "save_model", None):
        targets.append(("--save-model", Path(args.save_model).expanduser().absolute()))
    return targets
