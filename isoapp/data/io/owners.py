"""Temporary files a run can prove are its own, and the clean-up of those a dead run left.

Every process that puts a temporary file (``.isoapp-tmp-<pid>-<token>-...``) in a folder first
writes an owner record there, ``.isoapp-owner-<pid>-<token>``, and holds an exclusive flock on it
while it may still use those temporary files. The record holds the process's identity (host,
boot, PID namespace, PID, start time, the random token; :func:`isoapp.data.io.locks.identity`).

A later run removes ``.isoapp-tmp-<pid>-<token>-*`` only when

* the owner record ``.isoapp-owner-<pid>-<token>`` exists (a file merely *named* like a temporary
  file, with no record, is never touched), and
* its flock is free: the kernel drops a flock when its process ends, SIGKILL included, and a
  process in another PID namespace (a container) that shares the folder still holds it; on a file
  system without locks, only a process proved dead on this host, boot and PID namespace counts, and
* the path is not one the run was given to read (input, ``--model``, ``--psf``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .locks import identity, proven_dead, try_flock

log = logging.getLogger(__name__)

OWNER_PREFIX = ".isoapp-owner-"
_OWNER_RE = re.compile(r"^\.isoapp-owner-(\d+)-([0-9a-f]{8})$")
_owned: dict[str, list] = {}  # folder -> [fd or None, holders, owner file]
_protected: set[str] = set()
_mutex = threading.Lock()
_counter = [0]


def _key(folder: Path) -> str:
    return os.path.abspath(folder)


def owner_file(folder: str | os.PathLike) -> Path:
    me = identity()
    return Path(folder) / f"{OWNER_PREFIX}{me['pid']}-{me['token']}"


def _reset_after_fork() -> None:
    for entry in _owned.values():  # the parent's records and locks are the parent's
        if entry[0] is not None:
            try:
                os.close(entry[0])
            except OSError:
                pass
    _owned.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def claim(folder: str | os.PathLike) -> None:
    """Make sure this process's owner record exists (and is locked) in ``folder``."""
    with _mutex:
        _claim_locked(folder)


def _claim_locked(folder: str | os.PathLike) -> None:
    """The body of :func:`claim`; the caller holds ``_mutex``."""
    key = _key(Path(folder))
    if key in _owned:
        return
    path = owner_file(folder)
    fd = None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if try_flock(fd) is False:  # cannot happen for our own fresh name; be safe
            log.debug("owner record %s is locked by another process", path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(identity()).encode(), 0)
    except OSError as exc:  # the writer will meet the same problem and say so
        log.debug("no owner record in %s: %s", folder, exc)
        if fd is not None:
            os.close(fd)
        fd = None
    _owned[key] = [fd, 0, path]


def next_serial() -> int:
    with _mutex:
        _counter[0] += 1
        return _counter[0]


def _drop(key: str) -> None:
    fd, _, path = _owned.pop(key)
    prefix = f".isoapp-tmp-{path.name[len(OWNER_PREFIX):]}-"
    try:
        busy = any(p.name.startswith(prefix) for p in path.parent.iterdir())
    except OSError:
        busy = False
    if not busy:  # leftovers (a failed clean-up) keep the record, so a later run can remove them
        try:
            path.unlink()
        except OSError:
            pass
    if fd is not None:
        os.close(fd)


@contextmanager
def holding(folder: str | os.PathLike) -> Iterator[None]:
    """Keep this process's owner record in ``folder`` while the body writes temporary files there;
    the record goes when the last holder leaves and none of its temporary files remains."""
    folder = Path(folder)
    key = _key(folder)
    with _mutex:  # claim and count in one step: another thread's release cannot drop the record between
        _claim_locked(folder)
        _owned[key][1] += 1
    try:
        yield
    finally:
        with _mutex:
            entry = _owned.get(key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    _drop(key)


@atexit.register
def _release_all() -> None:
    with _mutex:
        for key in list(_owned):
            _drop(key)


# ---------------------------------------------------------------------------- paths never cleaned
def protect(paths: Iterable[str | os.PathLike | None]) -> None:
    """Paths this run reads (given on the command line): clean-up never removes them."""
    for p in paths:
        if p is not None and str(p) != "":
            try:
                _protected.add(os.path.realpath(os.path.expanduser(p)))
            except (OSError, ValueError):
                pass


def is_protected(p: Path) -> bool:
    try:
        real = os.path.realpath(p)
    except (OSError, ValueError):
        return True
    return real in _protected or str(p) in _protected or any(
        os.path.exists(q) and os.path.exists(real) and os.path.samefile(q, real) for q in _protected)


# ---------------------------------------------------------------------------- clean-up
def owner_dead(path: Path) -> tuple[bool, int | None]:
    """Whether the owner record at ``path`` belongs to a process that has ended; returns the locked fd."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False, None
    try:
        got = try_flock(fd)
    except OSError:
        got = False
    if got:
        return True, fd
    if got is None:  # no locks on this file system: the identity record decides
        try:
            record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            record = {}
        if isinstance(record, dict) and proven_dead(record):
            return True, fd
    os.close(fd)
    return False, None


def clean_dead_owners(folder: str | os.PathLike, remove) -> list[Path]:
    """Remove the temporary files of dead owners in ``folder`` with ``remove(path)``; returns them."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    mine = owner_file(folder).name
    for rec in entries:
        m = _OWNER_RE.match(rec.name)
        if m is None or rec.name == mine or rec.is_symlink() or not rec.is_file():
            continue
        dead, fd = owner_dead(rec)
        if not dead:
            continue
        try:
            prefix = f".isoapp-tmp-{m.group(1)}-{m.group(2)}-"
            left = False
            for p in entries:
                if not p.name.startswith(prefix):
                    continue
                if is_protected(p):
                    log.warning("left %s alone: this run reads it", p)
                    left = True
                    continue
                remove(p)
                removed.append(p)
                log.info("removed %s: a partial file left by isoapp process %s (host %s), which has ended", p,
                         m.group(1), identity()["host"])
            if not left:
                rec.unlink(missing_ok=True)
        finally:
            if fd is not None:
                os.close(fd)
    return removed
