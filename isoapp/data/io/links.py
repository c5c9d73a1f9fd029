"""Files an input reaches through links: HDF5 external links and virtual datasets, Zarr chunk links.

An output must never replace a file that an input only *points to*: ``vds.h5`` may be a virtual
dataset (or hold an external link) whose data lives in ``src.h5``, and ``isoapp restore vds.h5 -o
src.h5 --overwrite`` would otherwise replace the file that holds the real data.
:func:`linked_files` lists every file an input resolves to (recursively, for links to files
that link on), and :func:`expand_protected` adds them to the paths a run only reads.

A Zarr store whose chunk files are symbolic links leaving the store (to ``/etc/passwd``, say) is
refused (:func:`check_store_links`): isoapp would read that file's bytes as image data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from ...core.errors import InputError

log = logging.getLogger(__name__)

_H5_EXT = (".h5", ".hdf5", ".hdf", ".he5", ".nxs")
_MAX_LINKS = 100_000
_MAX_DEPTH = 4
_MAX_ENTRIES = 5_000_000


def _candidates(name: str, holder: Path) -> list[Path]:
    """Where HDF5 looks for a linked file: as given, beside the file holding the link, under the prefixes."""
    p = Path(name)
    if p.is_absolute():
        return [p]
    out = [holder.parent / p, Path.cwd() / p]
    for var in ("HDF5_EXT_PREFIX", "HDF5_VDS_PREFIX"):
        for prefix in os.environ.get(var, "").split(os.pathsep):
            if prefix:
                out.append(Path(prefix.replace("${ORIGIN}", str(holder.parent))) / p)
    return out


def _h5_links(path: Path) -> set[str]:
    import h5py

    names: set[str] = set()
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError, RuntimeError):
        return names
    seen = [0]
    try:
        def visit(name: str, link) -> bool | None:
            seen[0] += 1
            if seen[0] > _MAX_LINKS:
                return True  # stop: a pathological file; what was found is kept
            if isinstance(link, h5py.ExternalLink):
                names.add(link.filename)
            elif isinstance(link, h5py.HardLink):
                try:
                    obj = f.get(name)
                    if isinstance(obj, h5py.Dataset) and obj.is_virtual:
                        names.update(vs.file_name for vs in obj.virtual_sources())
                except (OSError, KeyError, ValueError, RuntimeError):
                    pass
            return None

        f.visititems_links(visit)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        log.debug("%s: links not fully listed: %s", path, exc)
    finally:
        f.close()
    names.discard(".")  # a virtual dataset of the same file
    return names


def linked_files(path: str | os.PathLike) -> list[Path]:
    """Every file ``path`` reaches through HDF5 external links and virtual datasets (not itself)."""
    start = Path(path).expanduser()
    found: list[Path] = []
    seen = set()
    todo = [(start, 0)]
    while todo:
        p, depth = todo.pop()
        try:
            real = p.resolve()
        except (OSError, RuntimeError):
            continue
        if real in seen:
            continue
        seen.add(real)
        if p is not start:
            found.append(p)
        if depth >= _MAX_DEPTH or real.suffix.lower() not in _H5_EXT or not real.is_file():
            continue
        for name in _h5_links(real):
            for c in _candidates(name, real):
                todo.append((c, depth + 1))
    return found


def expand_protected(protected: Iterable[tuple[str, str | os.PathLike | None]]) -> list[tuple[str, str | os.PathLike | None]]:
    """``protected`` plus, for each HDF5 file in it, the files it links to (labelled by the linking file)."""
    out: list[tuple[str, str | os.PathLike | None]] = []
    for label, p in protected:
        out.append((label, p))
        if p is None or str(p) == "" or Path(p).suffix.lower() not in _H5_EXT:
            continue
        for target in linked_files(p):
            out.append((f"file that the {label} {Path(p).name} links to,", target))
    return out


# ---------------------------------------------------------------------------- Zarr stores
def check_store_links(root: str | os.PathLike) -> None:
    """Refuse a Zarr store holding a symbolic link that leaves the store, dangles or loops.

    Links that stay inside the store (a chunk shared by two keys) are allowed.

    Raises
    ------
    InputError
        Naming the first such link and what to do.
    """
    root = Path(root)
    try:
        real_root = root.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{root.name} cannot be resolved ({exc}); check its symbolic links") from exc
    count = 0
    stack = [real_root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError as exc:
            raise InputError(f"{root.name}: cannot list {d} ({exc.strerror or exc}); check its permissions") from exc
        for e in entries:
            count += 1
            if count > _MAX_ENTRIES:
                log.warning("%s: more than %d entries; links beyond them were not checked", root.name, _MAX_ENTRIES)
                return
            if e.is_symlink():
                _check_link(root, real_root, Path(e.path))
            elif e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))


def _check_link(root: Path, real_root: Path, link: Path) -> None:
    rel = link.relative_to(real_root)
    fix = "copy the real files into the store (e.g. cp -rL) and try again"
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{root.name}: {rel} is a symbolic link that is broken or loops ({exc.__class__.__name__}); "
                         f"{fix}") from exc
    if real_root not in target.parents:
        raise InputError(f"{root.name}: {rel} is a symbolic link to {target}, outside the store; isoapp does not read "
                         f"files outside a Zarr store through links: {fix}")
