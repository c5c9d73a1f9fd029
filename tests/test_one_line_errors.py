"""Issue 28, "Internal errors where one line is promised" (items 11-14): exit 2 and one line, never a traceback.

The command line runs as a real process (``sys.executable -m isoapp``) where it matters how it
ends (hangs, ignored-exception tracebacks, a Dask cluster that dies); the rest runs in-process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli_helpers import ENV, ROOT, write_stack  # noqa: F401 - ROOT used by some tests

from isoapp.cli import main

_stack = write_stack


def _cli(argv: list[str], cwd: Path, timeout: float = 120) -> tuple[int, list[str], float]:
    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-m", "isoapp", *argv], cwd=cwd, env=ENV, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"isoapp {' '.join(argv[:4])}... still ran after {timeout} s")
    return r.returncode, r.stderr.strip().splitlines(), time.monotonic() - t0


def _one_line(rc: int, lines: list[str]) -> str:
    """Exit 2 with exactly one ``isoapp:`` line (log records aside) and no traceback."""
    assert rc == 2, lines[-5:]
    assert not any("Traceback" in ln or "Exception ignored" in ln for ln in lines), lines[-8:]
    mine = [ln for ln in lines if ln.startswith("isoapp:")]
    assert len(mine) == 1 and mine[0].startswith("isoapp: error:"), lines[-8:]
    return mine[0]


# ---------------------------------------------------------------------------- 11: the resume hint
def test_resume_hint_keeps_a_block_error(tmp_path):
    import argparse

    from isoapp.cli.checkpoints import with_resume_hint as _with_resume_hint
    from isoapp.run.blocks import Block, BlockError

    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "plan.json").write_text("{}")
    blk = Block(3, (), ((0, 8), (0, 8), (0, 8)), ((0, 2), (0, 8), (0, 8)), ((0, 8), (0, 8), (0, 8)))
    exc = BlockError(blk, OSError(28, "No space left on device"))
    args = argparse.Namespace(argv=["restore", "in.tif", "-o", "o.zarr"])
    new = _with_resume_hint(exc, args, tmp_path)
    assert isinstance(new, BlockError) and new.block is blk
    assert "No space left" in str(new) and "isoapp restore in.tif -o o.zarr --resume" in str(new)


# ---------------------------------------------------------------------------- 12: names
@pytest.mark.parametrize("n", [236, 250])
def test_long_output_name_is_refused_before_training(tmp_path, capsys, n):
    src = _stack(tmp_path / "in.tif")
    out = tmp_path / ("o" * (n - 4) + ".tif")
    assert len(out.name) == n
    assert main(["restore", str(src), "-o", str(out), "--method", "isonet", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bytes" in err[0] and "at most" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]  # no training, no checkpoint folder


def test_an_oserror_at_the_top_level_is_one_line(tmp_path, capsys, monkeypatch):
    import isoapp.cli.cmd_info as info

    def boom(args):
        raise OSError(5, "Input/output error", str(tmp_path / "x.tif"))

    monkeypatch.setattr(info, "run", boom)
    parser_run = main(["info", str(_stack(tmp_path / "in.tif"))])
    err = capsys.readouterr().err.strip().splitlines()
    assert parser_run == 2 and len(err) == 1 and err[0].startswith("isoapp: error: Input/output error"), err


# ---------------------------------------------------------------------------- 12, 13: Zarr chunk links
def _zarr(tmp_path: Path) -> Path:
    z = tmp_path / "in.zarr"
    assert main(["restore", str(_stack(tmp_path / "src.tif")), "-o", str(z), "--method", "linear"]) == 0
    return z


def _chunk(z: Path) -> Path:
    return next(p for p in sorted((z / "0").rglob("*")) if p.is_file() and not p.name.startswith("."))


@pytest.mark.parametrize("target", ["outside", "dangling", "loop"])
def test_zarr_chunk_links_that_leave_the_store_are_refused(tmp_path, capsys, target):
    z = _zarr(tmp_path)
    chunk = _chunk(z)
    chunk.unlink()
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n" * 200)
    if target == "outside":
        chunk.symlink_to(secret)
    elif target == "dangling":
        chunk.symlink_to(tmp_path / "gone")
    else:
        chunk.symlink_to(chunk)
    capsys.readouterr()
    assert main(["restore", str(z), "-o", str(tmp_path / "o.tif"), "--method", "linear"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "symbolic link" in err[0] and "cp -rL" in err[0], err
    assert not (tmp_path / "o.tif").exists()


def test_zarr_chunk_links_inside_the_store_are_read(tmp_path):
    z = _zarr(tmp_path)
    chunk = _chunk(z)
    copy = z / "0" / "kept-copy"
    copy.write_bytes(chunk.read_bytes())
    chunk.unlink()
    chunk.symlink_to(copy)
    assert main(["restore", str(z), "-o", str(tmp_path / "o.tif"), "--method", "linear", "--factor", "2"]) == 0


# ---------------------------------------------------------------------------- 12, 14: Dask addresses
pytest.importorskip("distributed")


def test_scheduler_that_is_not_an_address_is_one_line_and_fast(tmp_path):
    src = _stack(tmp_path / "in.tif")
    rc, lines, secs = _cli(["restore", str(src), "-o", str(tmp_path / "o.zarr"), "--method", "linear",
                            "--scheduler", "notaurl"], tmp_path)
    assert "Dask scheduler address" in _one_line(rc, lines)
    assert secs < 15 and not (tmp_path / "o.zarr").exists()


def test_scheduler_whose_name_does_not_resolve_is_one_line(tmp_path):
    src = _stack(tmp_path / "in.tif")
    rc, lines, _ = _cli(["restore", str(src), "-o", str(tmp_path / "o.zarr"), "--method", "linear",
                         "--scheduler", "tcp://no-such-host.invalid:8786"], tmp_path, timeout=90)
    assert "no-such-host.invalid" in _one_line(rc, lines)


def test_scheduler_that_accepts_and_never_answers_times_out(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(srv.accept()[0])  # accept, then say nothing: a tarpit
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        src = _stack(tmp_path / "in.tif")
        rc, lines, secs = _cli(["restore", str(src), "-o", str(tmp_path / "o.zarr"), "--method", "linear",
                                "--scheduler", f"tcp://127.0.0.1:{srv.getsockname()[1]}"], tmp_path, timeout=90)
        assert "did not answer" in _one_line(rc, lines)
        assert secs < 60 and held
    finally:
        srv.close()
        for c in held:
            c.close()


def _start_cluster(d: Path, cwd: Path) -> tuple[str, list[subprocess.Popen]]:
    """A scheduler and one worker on loopback, started in ``cwd`` (not the folder the client runs in)."""
    sfile = d / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(sfile)], env=ENV, cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    t0 = time.monotonic()
    while not sfile.exists() and time.monotonic() - t0 < 60:
        time.sleep(0.2)
    time.sleep(0.3)
    address = json.loads(sfile.read_text())["address"]
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--no-dashboard", "--local-directory", str(d / "w0"), "--no-nanny"], env=ENV,
                                  cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True))
    from distributed import Client

    with Client(address, timeout="30s") as c:
        c.wait_for_workers(1, timeout=120)
    return address, procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)


def test_relative_input_reaches_workers_started_elsewhere(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    here = tmp_path / "here"
    here.mkdir()
    _stack(here / "in.tif")
    address, procs = _start_cluster(tmp_path, elsewhere)
    try:
        rc, lines, _ = _cli(["restore", "in.tif", "-o", "o.zarr", "--method", "linear", "--scheduler", address, "-q"],
                            here, timeout=180)
        assert rc == 0, lines[-5:]
        assert (here / "o.zarr").is_dir() and not (elsewhere / "in.tif").exists()
    finally:
        _stop(procs)


def test_scheduler_killed_mid_run_is_one_line_with_the_resume_command(tmp_path):
    src = _stack(tmp_path / "in.tif", shape=(40, 128, 128))
    out = tmp_path / "o.zarr"
    address, procs = _start_cluster(tmp_path, tmp_path)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "isoapp", "restore", str(src), "-o", str(out), "--method",
                                 "linear", "--scheduler", address, "--block-size", "8", "32", "32"], cwd=tmp_path,
                                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        done = tmp_path / "o.zarr.isoapp-checkpoints" / "blocks" / "done.txt"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and proc.poll() is None:
            if done.exists() and len(done.read_text().split()) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the scheduler could be killed"
        os.killpg(procs[0].pid, signal.SIGKILL)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the run did not end within 120 s of losing its scheduler")
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert "Traceback" not in err, err[:600]
        errors = [ln for ln in lines if ln.startswith("isoapp: error:")]
        assert proc.returncode == 2 and len(errors) == 1, lines[-6:]
        assert "--resume" in errors[0] and "Dask" in errors[0]
    finally:
        _stop(procs)
