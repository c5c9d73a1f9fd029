"""Output safety: atomic writes and the refusal to overwrite an input.

Every output is first written to a hidden temporary file (or folder, for Zarr) beside the
destination and then moved into place with :func:`os.replace`, so a crash, a full disk or a
cancelled run never leaves a half-written file under the user's chosen name, and an existing
file at that name stays untouched until the new one is complete.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputError

log = logging.getLogger(__name__)

TMP_PREFIX = ".isoapp-tmp-"


def _remove(path: Path) -> None:
    """Delete a file or folder if it exists (best effort, used for clean-up)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError as exc:  # pragma: no cover - clean-up must never mask the real error
        log.warning("could not remove temporary %s: %s", path, exc)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the destination's folder; move it onto ``path`` on success.

    The temporary name keeps the destination's extension (``.isoapp-tmp-<random>-<name>``).
    Whatever the body writes there (a file, or a folder for Zarr) replaces ``path`` only when
    the body finishes without an exception; otherwise it is deleted and ``path`` is left as it
    was. When a folder is involved (Zarr), the old ``path`` is moved aside and removed only
    after the new one is in place.

    Parameters
    ----------
    path
        The final destination.

    Raises
    ------
    OutputError
        If the finished temporary output cannot be moved into place.
    """
    path = Path(path)
    token = secrets.token_hex(4)
    tmp = path.parent / f"{TMP_PREFIX}{token}-{path.name}"
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if not tmp.exists():
        raise OutputError(f"nothing was written for {path}; the writer produced no file")
    try:
        if path.exists() and not path.is_symlink() and (path.is_dir() or tmp.is_dir()):
            backup = path.parent / f"{TMP_PREFIX}{token}-old-{path.name}"
            os.replace(path, backup)
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(backup, path)
                raise
            _remove(backup)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"could not move the finished output onto {path}: {exc.strerror or exc}; "
                          "check that the file is not open in another program and try again") from exc
    log.debug("moved %s -> %s", tmp.name, path)


def _same_target(output: Path, inp: Path) -> bool:
    if output == inp:
        return True
    if inp.is_dir() and inp in output.parents:  # writing inside an input Zarr folder
        return True
    try:
        return output.exists() and inp.exists() and os.path.samefile(output, inp)
    except OSError:
        return False


def check_output_path(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Check that ``output`` may be written and return it as an absolute path.

    Parameters
    ----------
    output
        The requested output path.
    inputs
        Input files of the run (``None`` entries are ignored). The output must not resolve to
        any of them (symbolic and hard links included), nor lie inside an input folder.

    Raises
    ------
    OutputError
        If the output would overwrite an input, or its folder does not exist.
    """
    out = Path(output).expanduser()
    resolved = out.resolve()
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        inp_resolved = Path(inp).expanduser().resolve()
        if _same_target(resolved, inp_resolved):
            raise OutputError(f"refusing to overwrite the input {inp}; choose another -o path")
    if not resolved.parent.is_dir():
        raise OutputError(f"the output folder {resolved.parent} does not exist; "
                          "create it first or choose another -o path")
    return resolved
