"""Output safety: collisions with inputs, existing outputs, writability, free space, stale temp files.

isoapp promises never to modify a file it only reads and never to delete a file it did not write.
Everything that decides whether a path may be written lives here, so that the command line can
check every path a run will write *before* any work (reading, training) starts, and the writers
check again at write time.

Temporary files are named ``.isoapp-tmp-<pid>-<token>-<n>-<name>`` beside their destination. A run
that is killed (SIGKILL, power loss) leaves its temporary file behind; :func:`clean_stale_temps`
removes such files on the next run only when the owner record of the process that made them
proves that process has ended (:mod:`isoapp.data.io.owners`), and never a file the run was given.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import OutputError
from .links import expand_protected
from .locks import identity
from .names import check_name_length
from .owners import claim, clean_dead_owners, next_serial, protect

log = logging.getLogger(__name__)

TMP_PREFIX = ".isoapp-tmp-"
_TMP_RE = re.compile(r"^\.isoapp-tmp-(\d+)-[0-9a-f]{8}-")
_MIB = 2**20

# What the OME-Zarr writer creates (NGFF 0.4, Zarr format 2, one scale level "0"): only a folder
# made of these entries may be replaced with --overwrite.
_ZARR_TOP = {".zgroup", ".zattrs", ".zarray", ".zmetadata", "zarr.json", "0"}
_ZARR_CHUNK = re.compile(r"^(\d+([./]\d+)*|\.zarray|\.zattrs|zarr\.json)$")


# ---------------------------------------------------------------------------- temporary files
def temp_path(path: str | os.PathLike, tag: str = "") -> Path:
    """A fresh temporary name beside ``path`` that records this process's id and owner token."""
    path = Path(path)
    claim(path.parent)  # the owner record that lets a later run prove these files are dead
    return path.parent / f"{TMP_PREFIX}{os.getpid()}-{identity()['token']}-{next_serial()}-{tag}{path.name}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` may still be an isoapp run (conservative: True unless it is gone or a zombie)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists but belongs to someone else
        return True
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        if stat[stat.rindex(")") + 2:].startswith(("Z", "X")):  # a zombie: dead, not yet reaped
            return False
    except (OSError, ValueError):
        return True
    return True  # a live process, whatever its command line (a PID may be isoapp in another namespace)


def remove_path(path: Path) -> None:
    """Delete a file or folder if it exists (best effort, used for clean-up)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError as exc:  # pragma: no cover - clean-up must never mask the real error
        log.warning("could not remove temporary %s: %s", path, exc)


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the ``.isoapp-tmp-*`` entries of ``folder`` that a dead isoapp process provably left.

    Returns the removed paths. Only files whose owner record (``.isoapp-owner-<pid>-<token>``) is
    no longer locked by a live process are removed; files of live processes (another isoapp in
    the same folder, in a container too), files named like temporary files without a record, and
    paths the run reads are left alone (:mod:`isoapp.data.io.owners`).
    """
    return clean_dead_owners(folder, remove_path)


# ---------------------------------------------------------------------------- collisions
def resolve_path(p: str | os.PathLike) -> Path:
    """The absolute, link-free path; OutputError for a symbolic-link loop."""
    try:
        return Path(p).expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # a symbolic-link loop
        raise OutputError(f"{p} cannot be resolved ({exc}); check its symbolic links") from exc


def _inside(inner: Path, outer: Path) -> bool:
    return outer in inner.parents


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_collisions(output: Path, protected: Iterable[tuple[str, str | os.PathLike | None]], what: str = "-o") -> None:
    """Refuse an output that equals, lies inside or contains a file the run reads.

    ``protected`` holds ``(label, path)`` pairs such as ``("input", "in.tif")`` or
    ``("--psf", "bead.tif")``; ``None`` paths are skipped.
    """
    out = resolve_path(output)
    for label, p in expand_protected(protected):  # HDF5 external links and virtual datasets included
        if p is None or str(p) == "":
            continue
        r = resolve_path(p)
        if out == r or _same_file(out, r):
            raise OutputError(f"refusing to overwrite the {label} {p}; choose another {what} path")
        if _inside(out, r):
            raise OutputError(f"{what} {output} lies inside the {label} {p}, which isoapp only reads; "
                              f"choose a {what} path outside it")
        if _inside(r, out):
            raise OutputError(f"{what} {output} contains the {label} {p}; writing there could delete it. "
                              f"Choose a {what} path that does not hold the files the run reads")


# ---------------------------------------------------------------------------- existing outputs
def foreign_zarr_entries(folder: Path) -> list[str]:
    """Entries of an existing Zarr folder that isoapp's writer does not create (max 5)."""
    foreign: list[str] = []
    for top in sorted(folder.iterdir()):
        level = top.name.isdigit()  # a scale level of the pyramid: "0", "1", ...
        if (top.name not in _ZARR_TOP and not level) or level != top.is_dir():
            foreign.append(top.name)
        elif level:
            for sub in top.rglob("*"):
                if not _ZARR_CHUNK.match(sub.relative_to(top).as_posix().replace("/", ".")):
                    foreign.append(f"{top.name}/{sub.relative_to(top).as_posix()}")
                    break
        if len(foreign) >= 5:
            break
    return foreign


def check_replaceable(out: Path, *, overwrite: bool, zarr: bool, what: str = "-o") -> None:
    """Refuse to replace an existing ``out`` unless ``overwrite``; never replace foreign files.

    A Zarr output may replace only a folder laid out as isoapp writes it (the writer would
    otherwise delete files it did not create); a file output may replace only a file.
    """
    if not (out.exists() or out.is_symlink()):
        return
    if zarr:
        if not out.is_dir():
            raise OutputError(f"{out} exists and is not a Zarr folder; choose another {what} path")
    elif out.is_dir():
        raise OutputError(f"{out} is a folder; choose a file name for {what}")
    if not overwrite:
        raise OutputError(f"{out} already exists; add --overwrite to replace it, or choose another {what} path")
    if zarr:
        foreign = foreign_zarr_entries(out)
        if foreign:
            raise OutputError(f"{out} holds files isoapp did not write ({', '.join(foreign)}); it will not "
                              f"delete them, even with --overwrite. Choose another {what} path")


# ---------------------------------------------------------------------------- writability and space
def nearest_existing(path: Path) -> Path:
    """``path`` or its closest existing ancestor."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def probe_writable(folder: Path, what: str) -> None:
    """Create and delete a small file in ``folder``; OutputError naming ``what`` if that fails."""
    probe = folder / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = "the disk is read-only" if exc.errno == errno.EROFS else exc.strerror or str(exc)
        raise OutputError(f"cannot write {what} in {folder}: {reason}; choose a folder you can write to") from exc


def ensure_free(folder: Path, needed: int, what: str) -> None:
    """OutputError if the file system of ``folder`` has less than ``needed`` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise OutputError(f"not enough free space for {what} in {folder}: it needs about "
                          f"{_human(needed)} but {_human(free)} is free; free some space or choose another folder")


def _human(n: float) -> str:
    return f"{n / _MIB:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


# ---------------------------------------------------------------------------- the plan
@dataclass
class PlannedOutput:
    """One path a run will write: a volume file/folder (``kind='volume'``) or a folder of files."""

    path: Path
    what: str  # how messages name it, e.g. "-o" or "--save-model"
    kind: str = "volume"  # "volume" or "folder"
    size: int = 0  # estimated bytes
    zarr: bool = False


def estimate_volume_bytes(shape: Sequence[int], itemsize: int, chunked: bool) -> int:
    """Bytes a written stack takes: the data, edge chunks of 16 planes (HDF5/Zarr), 1 MiB of headers."""
    shape = [int(s) for s in shape]
    nz = shape[-3]
    if chunked:
        nz = -(-nz // 16) * 16 if nz > 16 else nz
    n = itemsize * nz
    for s in shape[:-3] + shape[-2:]:
        n *= s
    return int(n * 1.02) + _MIB


def check_outputs(outputs: Sequence[PlannedOutput], protected: Sequence[tuple[str, str | os.PathLike | None]],
                  *, overwrite: bool) -> None:
    """Check every path a run will write before any work starts.

    For each output: no collision with a protected (read) path or another output; its folder
    exists (volumes) or can be created (folders); it can be written (a real probe file, so a
    read-only disk is caught); an existing output is replaced only with ``overwrite`` and only if
    isoapp's writer made it; and the free space of each file system covers the estimated sizes.
    Stale temporary files of dead isoapp processes in these folders are removed on the way.
    """
    seen: dict[Path, str] = {}
    outputs = list(outputs)
    protect(p for _, p in protected)  # clean-up never removes a path the run reads
    space: dict[int, tuple[Path, int, list[str]]] = {}
    for o in outputs:
        out = resolve_path(o.path)
        if out in seen:
            raise OutputError(f"{o.what} and {seen[out]} name the same path {o.path}; choose distinct paths")
        seen[out] = o.what
        check_collisions(o.path, protected, o.what)
        check_name_length(out, o.what, temp=o.kind == "volume")
        if o.kind == "volume":
            if out.parent.exists() and not out.parent.is_dir():
                raise OutputError(f"{out.parent} is a file, not a folder; choose another {o.what} path")
            if not out.parent.is_dir():
                raise OutputError(f"the output folder {out.parent} does not exist; "
                                  f"create it first or choose another {o.what} path")
            check_replaceable(out, overwrite=overwrite, zarr=o.zarr, what=o.what)
            folder = out.parent
        else:
            if out.exists() and not out.is_dir():
                raise OutputError(f"{o.what} {o.path} is a file; it must be a folder (it will be created)")
            folder = nearest_existing(out)
            if not folder.is_dir():
                raise OutputError(f"{o.what} {o.path} cannot be created: {folder} is a file")
        probe_writable(folder, f"{o.what} {o.path}" if o.kind == "folder" else str(o.path))
        clean_stale_temps(folder)
        if o.kind == "folder" and out.is_dir():
            clean_stale_temps(out)
        try:
            dev = os.stat(folder).st_dev
        except OSError:
            continue
        f, total, names = space.get(dev, (folder, 0, []))
        space[dev] = (f, total + o.size, names + [o.what])
    for folder, total, names in space.values():
        if total:
            ensure_free(folder, total, " and ".join(names))


def check_output_folder(folder: str | os.PathLike, names: Sequence[str], *, overwrite: bool, what: str = "-o",
                        size: int = 0) -> None:
    """Check a folder a command fills with the files ``names`` (created if missing).

    Files of those names already there are replaced only with ``overwrite``; other files in the
    folder are never touched.
    """
    out = Path(folder).expanduser()
    check_outputs([PlannedOutput(out, what, "folder", size)], (), overwrite=overwrite)
    if out.is_dir() and not overwrite:
        existing = [n for n in names if (out / n).exists()]
        if existing:
            raise OutputError(f"{out} already holds {', '.join(existing[:4])}; add --overwrite to replace "
                              f"{'it' if len(existing) == 1 else 'them'}, or choose another {what} folder")
