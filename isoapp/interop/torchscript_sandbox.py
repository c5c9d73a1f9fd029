"""Run a trusted TorchScript module in a child process that the user can always stop.

TorchScript is code: its ``forward`` (or the ``__setstate__`` run on loading) may loop forever in
C++, where Python's signal handlers never run, so a run that executes it in-process ignores Ctrl-C
and SIGTERM. :class:`SandboxedModule` loads and runs the module in a child Python process instead;
the parent waits in short polls, and on ``should_stop()`` (the first SIGINT/SIGTERM of the command
line), any exception or a second signal, it kills the child with SIGKILL. The child ignores SIGINT
and SIGTERM itself and dies with its parent (``PR_SET_PDEATHSIG`` on Linux).

This bounds *time*, not *rights*: the child still runs as the user. Only packages the user trusts
(``--trust-torchscript``) get here; isoapp's own packages never run their TorchScript
(:mod:`isoapp.interop.package_safety`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import torch

from ..core.errors import Cancelled, ModelError

log = logging.getLogger(__name__)

#: seconds between two looks at ``should_stop`` while the child works
POLL_S = 0.1
#: seconds the child may take to load the module and say what it is
LOAD_TIMEOUT_S = 120.0


class _Child:
    """One child process with a message pipe each way."""

    def __init__(self, name: str) -> None:
        self.name = name
        p_read, c_write = os.pipe()
        c_read, p_write = os.pipe()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])  # the isoapp this process runs
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        code = "from isoapp.interop.torchscript_sandbox import child_main; child_main()"
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", code, str(c_read), str(c_write), str(os.getpid())],
                                         pass_fds=(c_read, c_write), env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os.close(c_read)
            os.close(c_write)
        self.recv_conn, self.send_conn = Connection(p_read), Connection(p_write)

    def send(self, header: dict, payload: bytes = b"") -> None:
        try:
            self.send_conn.send_bytes(json.dumps(header).encode())
            self.send_conn.send_bytes(payload)
        except OSError:
            raise ModelError(f"{self.name}: the TorchScript process ended unexpectedly (exit "
                             f"{self.proc.poll()}); the package cannot be run") from None

    def recv(self, should_stop: Callable[[], bool] | None, timeout: float | None = None) -> tuple[dict, bytes]:
        """The child's next message, polling ``should_stop``; Cancelled / ModelError otherwise."""
        import time

        t0 = time.monotonic()
        while not self.recv_conn.poll(POLL_S):
            if should_stop is not None and should_stop():
                raise Cancelled("restoration stopped on request")
            if self.proc.poll() is not None and not self.recv_conn.poll(0):
                raise ModelError(f"{self.name}: the TorchScript process ended unexpectedly (exit {self.proc.returncode})"
                                 "; the package cannot be run")
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise ModelError(f"{self.name}: its TorchScript did not load within {timeout:.0f} s; the package "
                                 "cannot be run")
        try:
            header = json.loads(self.recv_conn.recv_bytes())
            payload = self.recv_conn.recv_bytes()
        except (EOFError, OSError, ValueError):
            raise ModelError(f"{self.name}: the TorchScript process ended unexpectedly (exit {self.proc.poll()}); "
                             "the package cannot be run") from None
        if "error" in header:
            raise ModelError(f"{self.name}: its TorchScript failed: {str(header['error'])[:160]}")
        return header, payload

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.recv_conn.close()
        self.send_conn.close()


class SandboxedModule:
    """A TorchScript module (bytes) that is loaded and run only in a child process.

    Parameters
    ----------
    data
        The TorchScript file's bytes.
    name
        The package's name, for messages.
    """

    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.name = data, name
        self.factor = self.divisor = 0

    def describe(self, should_stop: Callable[[], bool] | None = None) -> None:
        """Load the module in a child to read its ``factor`` and ``divisor``; the child then ends."""
        with self.session(should_stop=should_stop):
            pass

    @contextmanager
    def session(self, device: torch.device | str = "cpu",
                should_stop: Callable[[], bool] | None = None) -> Iterator[_Proxy]:
        """A child holding the loaded module; yields a callable proxy. The child is killed on exit."""
        child = _Child(self.name)
        try:
            child.send({"device": str(device), "threads": torch.get_num_threads()}, self.data)
            info, _ = child.recv(should_stop, timeout=LOAD_TIMEOUT_S)
            self.factor, self.divisor = int(info["factor"]), int(info["divisor"])
            yield _Proxy(child, self.factor, should_stop)
        finally:
            child.kill()


class _Proxy:
    """Called like the module by :func:`isoapp.interop.bioimageio.run_module`: ``(1, 1, Z, Y, X)`` in, out."""

    def __init__(self, child: _Child, factor: int, should_stop: Callable[[], bool] | None) -> None:
        self.child, self.factor, self.should_stop = child, factor, should_stop

    def to(self, device) -> _Proxy:
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        a = np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)
        log.info("sending a %s slab to the TorchScript process", "x".join(str(n) for n in a.shape[2:]))
        self.child.send({"shape": list(a.shape)}, a.tobytes())
        header, payload = self.child.recv(self.should_stop)
        shape = [int(n) for n in header["shape"]]
        z_in = a.shape[2]
        if shape != [1, 1, (z_in - 1) * self.factor + 1, *a.shape[3:]] or len(payload) != 4 * int(np.prod(shape)):
            raise ModelError(f"{self.child.name}: its TorchScript returned shape {shape[:6]}, not the "
                             f"{(z_in - 1) * self.factor + 1}-plane stack its factor promises")
        return torch.from_numpy(np.frombuffer(payload, np.float32).reshape(shape).copy())


# ---------------------------------------------------------------------------- the child side
def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def child_main() -> None:
    """Entry point of the child: load the module, then restore each slab sent to it."""
    import warnings

    r, w, parent = (int(a) for a in sys.argv[1:4])
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    _die_with_parent(parent)
    rc, wc = Connection(r), Connection(w)

    def reply(header: dict, payload: bytes = b"") -> None:
        wc.send_bytes(json.dumps(header).encode())
        wc.send_bytes(payload)

    setup = json.loads(rc.recv_bytes())
    data = rc.recv_bytes()
    try:
        import io

        torch.set_num_threads(max(1, int(setup.get("threads", 1))))
        device = torch.device(setup.get("device", "cpu"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(io.BytesIO(data), map_location=device).eval()
        reply({"factor": int(module.factor), "divisor": int(getattr(module, "divisor", 1))})
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        reply({"error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
        return
    while True:
        try:
            header = json.loads(rc.recv_bytes())
            buf = rc.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            x = torch.from_numpy(np.frombuffer(buf, np.float32).reshape(header["shape"]).copy()).to(device)
            with torch.no_grad():
                y = module(x).float().cpu().numpy()
            reply({"shape": list(y.shape)}, np.ascontiguousarray(y).tobytes())
        except Exception as exc:  # noqa: BLE001
            reply({"error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
