"""Process helpers and Dask runners of the data-loss battery (``benchmarks/safety_battery_dataloss.py``).

:class:`DCase` is a battery case with a ``runner``: a function that runs the case with real
processes and returns ``(exit code, stderr)`` of the run being judged. The Dask runners start a
scheduler and a worker on loopback, or a tarpit that accepts connections and never answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safety_battery_cases import ENV, Case

Runner = Callable[["DCase", Path, Path, Path], tuple[int, str]]


@dataclass
class DCase(Case):
    runner: Runner | None = None


def _cli(argv: list[str], cwd: Path | None = None, timeout: float = 240, quiet: bool = True) -> tuple[int, str]:
    try:
        r = subprocess.run([sys.executable, "-m", "isoapp", *argv, *(["-q"] if quiet else [])], cwd=cwd, env=ENV,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 98, f"TIMEOUT: still running after {timeout} s"
    return r.returncode, r.stderr


def _fail(rc: int, err: str, why: str | None) -> tuple[int, str]:
    return (99, f"{err}\nPOSTCHECK FAILED: {why}") if why else (rc, err)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "missing"



# ---------------------------------------------------------------------------- Dask
def _tarpit(signal_it: bool) -> Runner:
    def run(case: DCase, fx: Path, w: Path, logs: Path) -> tuple[int, str]:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        held: list[socket.socket] = []

        def accept() -> None:
            while True:
                try:
                    held.append(srv.accept()[0])
                except OSError:
                    return

        threading.Thread(target=accept, daemon=True).start()
        argv = ["restore", str(fx / "in.tif"), "-o", str(w / "tarpit.zarr"), "--method", "linear", "--scheduler",
                f"tcp://127.0.0.1:{srv.getsockname()[1]}", "-q"]
        try:
            if not signal_it:
                return _cli(argv[:-1], timeout=120)
            p = subprocess.Popen([sys.executable, "-m", "isoapp", *argv], env=ENV, stderr=subprocess.PIPE, text=True)
            t0 = time.monotonic()
            while not held and time.monotonic() - t0 < 60:
                time.sleep(0.1)
            time.sleep(0.5)
            p.send_signal(signal.SIGTERM)
            t1 = time.monotonic()
            try:
                _, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                return 98, "SIGTERM ignored for 30 s"
            took = time.monotonic() - t1
            return _fail(p.returncode, err, None if took <= 10 else f"SIGTERM took {took:.0f} s")
        finally:
            srv.close()
            for c in held:
                c.close()
    return run


def _cluster(d: Path, cwd: Path, nanny: bool = False) -> tuple[str, list[subprocess.Popen]]:
    sfile = d / "scheduler.json"
    sfile.unlink(missing_ok=True)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                               "0", "--no-dashboard", "--scheduler-file", str(sfile)], env=ENV, cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    t0 = time.monotonic()
    while not sfile.exists() and time.monotonic() - t0 < 60:
        time.sleep(0.2)
    time.sleep(0.3)
    address = json.loads(sfile.read_text())["address"]
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--no-dashboard", "--local-directory", str(d / "w0"),
                                   *([] if nanny else ["--no-nanny"])], env=ENV, cwd=cwd,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    from distributed import Client

    with Client(address, timeout="30s") as c:
        c.wait_for_workers(1, timeout=120)
    return address, procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)


def _dask(kind: str) -> Runner:
    def run(case: DCase, fx: Path, w: Path, logs: Path) -> tuple[int, str]:
        try:
            import distributed  # noqa: F401
        except ImportError:
            return -999, "skipped: dask distributed is not installed"
        d = w / f"dask_{kind}"
        d.mkdir(exist_ok=True)
        here = d / "here"
        here.mkdir(exist_ok=True)
        address, procs = _cluster(d, d if kind != "relative" else fx.parent, nanny=kind == "worker")
        try:
            if kind == "relative":
                shutil.copy(fx / "in.tif", here / "in.tif")
                return _cli(["restore", "in.tif", "-o", "o.zarr", "--method", "linear", "--scheduler", address,
                             "--overwrite"], cwd=here)
            out = here / f"o_{kind}.zarr"
            p = subprocess.Popen([sys.executable, "-m", "isoapp", "restore", str(fx / "dask_in.tif"), "-o", str(out),
                                  "--method", "linear", "--scheduler", address, "--block-size", "8", "32", "32"],
                                 env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            done = here / f"{out.name}.isoapp-checkpoints" / "blocks" / "done.txt"
            t0 = time.monotonic()
            while time.monotonic() - t0 < 120 and p.poll() is None:
                if done.exists() and len(done.read_text().split()) >= 3:
                    break
                time.sleep(0.05)
            os.killpg(procs[0 if kind == "scheduler" else 1].pid, signal.SIGKILL)
            try:
                _, err = p.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                p.kill()
                return 98, "the run did not end within 180 s of losing its cluster"
            why = None
            if p.returncode == 2 and "--resume" not in err:
                why = "no resume command in the error"
            return _fail(p.returncode, err, why)
        finally:
            _stop(procs)
    return run
