"""Who a run is, and exclusive locks on the paths a run writes.

Two things need to know whether another isoapp process is still at work:

* **Run locks** (:func:`lock_paths`): a run that writes an output (or resumes a work folder) holds an
  exclusive ``fcntl.flock`` on a small lock file beside it, ``.isoapp-lock-<name>``. A second run
  that wants the same path finds the lock taken and refuses in one line, so two runs never write
  the same output or compute the same block twice. The kernel releases a flock when its process
  ends, however it ends (SIGKILL included), so a lock file left by a killed run does not block the
  next one.
* **Owner records** (:mod:`isoapp.data.io.owners`): the same flock, on a file that also records the
  process's identity (:func:`identity`: host, boot, PID namespace, PID, start time, random token),
  tells a later run whether the temporary files of an earlier one may be removed.

A flock works across PID namespaces (containers) on one kernel, and over NFS through its lock
manager; where the file system has no locks at all, the identity record decides, and anything
that cannot be proved dead counts as alive.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...core.errors import OutputError

log = logging.getLogger(__name__)

LOCK_PREFIX = ".isoapp-lock-"
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_held: dict[str, list] = {}  # resolved target -> [fd, count, lock file]; re-entrant within a process
_mutex = threading.Lock()
_identity: dict[str, Any] = {}


# ---------------------------------------------------------------------------- who this process is
def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def pid_namespace(pid: int | str = "self") -> str:
    """The PID namespace of a process (``pid:[4026531836]``), or "" where /proc does not say."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def start_time(pid: int | str = "self") -> int | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    stat = _read(f"/proc/{pid}/stat")
    try:
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def identity() -> dict[str, Any]:
    """This process: host, boot id, PID namespace, PID, start time and a random token (per process)."""
    pid = os.getpid()
    if _identity.get("pid") != pid:  # a forked child is another process: a new identity
        import secrets

        _identity.clear()
        _identity.update(host=socket.gethostname(), boot=_read("/proc/sys/kernel/random/boot_id"),
                         pidns=pid_namespace(), pid=pid, start=start_time(), token=secrets.token_hex(4))
    return dict(_identity)


def proven_dead(record: dict[str, Any]) -> bool:
    """Whether the process a record describes has certainly ended (used only where flock is unavailable).

    True only on this host and boot, in this PID namespace, and when its PID is free or now
    belongs to a process started at another time. Anything else (another host, a container,
    a missing field) counts as alive.
    """
    me = identity()
    if not record.get("host") or record.get("host") != me["host"]:
        return False
    if me["boot"] and record.get("boot") and record["boot"] != me["boot"]:
        return True  # the machine rebooted since: every process of that boot has ended
    if not me["pidns"] or record.get("pidns") != me["pidns"]:
        return False
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if not os.path.exists(f"/proc/{pid}"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    started = start_time(pid)
    return started is not None and record.get("start") is not None and started != record["start"]


def try_flock(fd: int) -> bool | None:
    """Take an exclusive flock without waiting: True taken, False held by another, None no locks here."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in _NO_LOCKS:
            return None
        raise


# ---------------------------------------------------------------------------- run locks
def _forget_after_fork() -> None:
    _held.clear()  # the parent's locks are the parent's: a forked child takes its own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def lock_file_for(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.isoapp-lock-<name>`` beside it (a digest when the name is long)."""
    target = Path(target)
    name = f"{LOCK_PREFIX}{target.name}"
    if len(name.encode()) > 200:
        name = f"{LOCK_PREFIX}{hashlib.sha256(target.name.encode()).hexdigest()[:24]}"
    return target.parent / name


def _holder(lock: Path) -> str:
    try:
        rec = json.loads(lock.read_text()[:4096] or "{}")
        since = time.strftime("%H:%M:%S", time.localtime(float(rec.get("since", 0)))) if rec.get("since") else "?"
        return f"process {rec.get('pid', '?')} on {rec.get('host', '?')}, since {since}"
    except (OSError, ValueError, TypeError, AttributeError):
        return "another process"


def _acquire(target: Path, what: str) -> list | None:
    lock = lock_file_for(target)
    for _ in range(5):  # the previous holder may unlink the file between our open and our flock
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # a read-only or missing folder: the preflight says so in its own words
            log.debug("no lock for %s: %s", target, exc)
            return None
        got = try_flock(fd)
        if got is None:
            os.close(fd)
            log.debug("no locks on the file system of %s", target)
            return None
        if not got:
            os.close(fd)
            raise OutputError(f"another isoapp run is writing {what} {target} ({_holder(lock)}); wait for it to "
                              f"finish, or choose another {what} path")
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except OSError:
            same = False
        if same:
            rec = {**identity(), "since": time.time(), "target": str(target)}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(rec).encode(), 0)
            return [fd, 1, lock]
        os.close(fd)  # we locked a file that was unlinked meanwhile: try the new one
    return None


def _release(key: str) -> None:
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _held[key]
    fd, _, lock = entry
    try:
        os.unlink(lock)  # while still holding it: a waiter that opened it re-checks the inode
    except OSError:
        pass
    os.close(fd)


@contextmanager
def lock_paths(targets: Iterable[tuple[str, str | os.PathLike | None]]) -> Iterator[None]:
    """Hold exclusive locks on every ``(what, path)`` target for the body (re-entrant per process).

    Raises
    ------
    OutputError
        If another process holds one of them; the message names that process.
    """
    taken: list[str] = []
    try:
        for what, p in targets:
            if p is None:
                continue
            target = Path(p).expanduser().absolute()
            key = str(target)
            with _mutex:
                if key in _held and _held[key][0] is not None:
                    _held[key][1] += 1
                    taken.append(key)
                    continue
                if not target.parent.is_dir():
                    continue
                entry = _acquire(target, what)
                if entry is not None:
                    _held[key] = entry
                    taken.append(key)
        yield
    finally:
        with _mutex:
            for key in reversed(taken):
                _release(key)


def held_locks() -> list[str]:
    """The targets this process holds locks on (for tests)."""
    return sorted(_held)
