"""Guards around a Dask cluster: a checked address, a bounded connect, a lost cluster in one line.

* :func:`check_address` refuses at once what is not ``[tcp://]HOST:PORT`` (``--scheduler
  notaurl`` used to take 20 s and print an ignored-exception traceback).
* :func:`probe_scheduler` resolves the host and asks the scheduler who it is, all within a hard
  time limit: a name that does not resolve, a port that refuses, and a server that accepts the
  connection and never answers (an HTTP server, a tarpit) each end in one line, instead of a
  connect that hangs and ignores SIGTERM.
* :func:`quiet_dask_logs` keeps distributed's own log records (tracebacks of a dying worker or
  scheduler) off the terminal unless isoapp runs with ``--debug``.
* :class:`ClusterLost` is the one-line error of a run whose worker or scheduler died mid-run;
  the finished blocks stay recorded and the command line appends the ``--resume`` command.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from concurrent.futures import CancelledError
from typing import Any

from ..core.errors import ConfigError, IsoappError

log = logging.getLogger(__name__)

_ADDR = re.compile(r"^(?:(?P<scheme>tcp|tls)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d{1,5})/?$")
_EXAMPLE = "give the scheduler's address as tcp://HOST:PORT, e.g. tcp://10.0.0.1:8786"


class ClusterLost(IsoappError):
    """The Dask cluster (a worker or the scheduler) went away during a run."""


def check_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a scheduler address; ConfigError for anything else."""
    m = _ADDR.match(str(address).strip())
    port = int(m.group("port")) if m else 0
    if m is None or not 0 < port < 65536:
        raise ConfigError(f"--scheduler {address!r} is not a Dask scheduler address; {_EXAMPLE}")
    return m.group("scheme") or "tcp", m.group("host"), port


async def _identity(address: str, timeout: float) -> dict:
    from distributed.comm import connect

    comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout)
    try:
        await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), timeout)
        reply = await asyncio.wait_for(comm.read(), timeout)
    finally:
        comm.abort()
    return reply if isinstance(reply, dict) else {}


def probe_scheduler(address: str, timeout: float = 10.0) -> str:
    """Check that a Dask scheduler answers at ``address`` within ``timeout`` seconds; returns the address.

    Raises
    ------
    ConfigError
        A malformed address, a host that does not resolve, a refused connection, or a server that
        does not answer as a Dask scheduler in time. Nothing has been written at that point.
    """
    scheme, host, port = check_address(address)
    full = f"{scheme}://{host}:{port}"
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            result["dns"] = exc
            return
        try:
            import distributed.comm  # noqa: F401
        except ImportError:  # connect() says how to install it
            result["ok"] = {}
            return
        if scheme != "tcp":  # TLS needs the cluster's certificates: the Client checks it
            result["ok"] = {}
            return
        try:
            result["ok"] = asyncio.run(_identity(full, timeout))
        except BaseException as exc:  # noqa: BLE001 - reported below, in one line
            result["error"] = exc

    t = threading.Thread(target=work, name="isoapp-scheduler-probe", daemon=True)
    t.start()
    t.join(timeout + 5.0)
    nothing = "Nothing was written"
    if "dns" in result:
        raise ConfigError(f"cannot resolve the host {host} of --scheduler {address} ({result['dns']}); check the "
                          f"name, or give the scheduler's IP address. {nothing}")
    if "ok" not in result:
        exc = result.get("error")
        why = "it did not answer" if exc is None or isinstance(exc, asyncio.TimeoutError | TimeoutError) else (
            f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}")
        raise ConfigError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({why}); check the "
                          f"address and that `dask scheduler` is running there. {nothing}")
    kind = result["ok"].get("type")
    if scheme == "tcp" and kind not in (None, "Scheduler"):
        raise ConfigError(f"{address} answers but is a Dask {kind}, not a scheduler; give the scheduler's address. "
                          f"{nothing}")
    return full


def quiet_dask_logs() -> None:
    """Keep distributed's log records (and their tracebacks) off stderr when the command line (or an
    application) set up isoapp's logging, unless it logs at DEBUG."""
    root = logging.getLogger("isoapp")
    if not root.handlers or root.getEffectiveLevel() <= logging.DEBUG:  # a library user's logging stays theirs
        return
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in ("distributed", "tornado")]
    for name in ("distributed", "tornado", "asyncio", *names):  # children with their own level (dask config) too
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        import dask

        dask.config.set({"logging.distributed": "critical", "distributed.admin.log-length": 0})
    except Exception:  # noqa: BLE001 - quieter logs are a nicety, never a reason to fail
        pass


def lost_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the cluster (not a block's data) failed."""
    errors: list[type[BaseException]] = [CancelledError, asyncio.CancelledError, ConnectionError, TimeoutError,
                                         EOFError]
    try:
        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker

        errors += [CommClosedError, KilledWorker]
    except ImportError:  # pragma: no cover - distributed is optional
        pass
    return tuple(errors)


def cluster_lost(exc: BaseException, finished: int, total: int) -> ClusterLost:
    """The one-line error of a run whose cluster went away after ``finished`` of ``total`` blocks."""
    first = (str(exc).splitlines() or [""])[0][:120]
    what = f"{type(exc).__name__}{': ' + first if first else ''}"
    return ClusterLost(f"the Dask cluster stopped after {finished} of {total} blocks ({what}): a worker or the "
                       "scheduler died or was stopped. The finished blocks are recorded; restart the cluster and resume")
