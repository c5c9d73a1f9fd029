"""Issue 28, "Data loss" (items 7-10): links, stale-temp clean-up, concurrent runs, a disk that fills.

Real files, real processes: HDF5 virtual datasets and external links made with h5py, a second
``isoapp`` process racing the first, a process in its own PID namespace (``unshare -p``), and a
small tmpfs that fills during a block-wise TIFF output.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from functools import cache
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_helpers import ENV, ROOT, write_stack  # noqa: F401 - ROOT used by some tests

from isoapp.cli import main

_stack = write_stack


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


def _src_h5(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", data=np.random.default_rng(1).random((9, 24, 24), dtype=np.float32))
        ds.attrs["element_size_um"] = (0.8, 0.2, 0.2)
    return path


# ---------------------------------------------------------------------------- 7: HDF5 links
@pytest.mark.parametrize("kind", ["vds", "external"])
def test_output_that_an_hdf5_input_links_to_is_refused(tmp_path, capsys, kind, monkeypatch):
    src = _src_h5(tmp_path / "src.h5")
    before = _sha(src)
    link = tmp_path / f"{kind}.h5"
    with h5py.File(link, "w") as f:
        if kind == "vds":
            layout = h5py.VirtualLayout(shape=(9, 24, 24), dtype=np.float32)
            layout[...] = h5py.VirtualSource("src.h5", "data", shape=(9, 24, 24))
            ds = f.create_virtual_dataset("data", layout)
        else:
            f["data"] = h5py.ExternalLink("src.h5", "/data")
            ds = None
        if ds is not None:
            ds.attrs["element_size_um"] = (0.8, 0.2, 0.2)
    monkeypatch.chdir(tmp_path)  # HDF5 resolves the relative names from here and beside the file
    assert main(["restore", str(link), "-o", str(src), "--method", "linear", "--overwrite", "--dataset", "data"]) == 2
    err = _err(capsys)
    assert "links to" in err and "src.h5" in err
    assert _sha(src) == before
    # an unrelated output is fine, and the linked file is still untouched
    assert main(["restore", str(link), "-o", str(tmp_path / "o.h5"), "--method", "linear", "--dataset", "data"]) == 0
    assert _sha(src) == before


# ---------------------------------------------------------------------------- 8: stale-temp clean-up
def test_files_named_like_temps_given_on_the_command_line_are_kept(tmp_path, capsys):
    inp = _stack(tmp_path / ".isoapp-tmp-999999-deadbeef-in.tif")
    model = tmp_path / ".isoapp-tmp-999998-deadbeef-model"
    assert main(["restore", str(_stack(tmp_path / "m.tif")), "-o", str(tmp_path / "m_out.tif"), "--method", "linear",
                 "--save-model", str(model)]) == 0
    before = _sha(inp)
    assert main(["restore", str(inp), "-o", str(tmp_path / "o.tif"), "--model", str(model)]) == 0
    assert inp.exists() and _sha(inp) == before
    assert (model / "config.json").is_file()


def test_a_live_process_is_alive_whatever_its_command_line(tmp_path):
    from isoapp.data.io.safety import TMP_PREFIX, clean_stale_temps, pid_alive

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert pid_alive(sleeper.pid)
        tmp = tmp_path / f"{TMP_PREFIX}{sleeper.pid}-0123abcd-out.zarr"
        tmp.mkdir()
        (tmp / ".zgroup").write_text("{}")
        assert clean_stale_temps(tmp_path) == []
        assert (tmp / ".zgroup").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


@cache
def _can_unshare_pid() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare for a PID namespace"
    r = subprocess.run(["unshare", "-p", "-f", "--mount-proc", "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot make a PID namespace here ({r.stderr.strip()[:80]})"


def test_partial_output_of_a_run_in_another_pid_namespace_is_kept(tmp_path):
    """A run that is PID 1 in a container: a host run must not take its partial output for a dead one."""
    reason = _can_unshare_pid()
    if reason:
        pytest.skip(reason)
    code = textwrap.dedent(f"""
        import os, sys, time
        from isoapp.data.io.safety import temp_path
        t = temp_path({str(tmp_path / 'a.zarr')!r})
        t.mkdir(); (t / '.zgroup').write_text('{{}}')
        print(os.getpid(), t, flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen(["unshare", "-p", "-f", "--mount-proc", sys.executable, "-c", code], env=ENV,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pid, tmp = proc.stdout.readline().split()
        assert pid == "1"
        from isoapp.data.io.safety import clean_stale_temps

        assert clean_stale_temps(tmp_path) == []
        # and a whole host run writing into that folder leaves it alone
        assert main(["restore", str(_stack(tmp_path / "in.tif")), "-o", str(tmp_path / "b.zarr"), "--method",
                     "linear"]) == 0
        assert Path(tmp, ".zgroup").exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # once that process is gone (the namespace's teardown may lag its parent's exit), its files go
    deadline = time.monotonic() + 20
    removed = clean_stale_temps(tmp_path)
    while not removed and time.monotonic() < deadline:
        time.sleep(0.2)
        removed = clean_stale_temps(tmp_path)
    assert removed == [Path(tmp)]


# ---------------------------------------------------------------------------- 9: concurrent runs
def _start_long_run(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "isoapp", *argv], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait_training(proc: subprocess.Popen, ckpt_dir: Path, timeout: float = 120) -> None:
    """Wait until the run has taken its locks and is training (its checkpoint folder exists)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"the first run ended early: {proc.stderr.read()[-400:]}")
        if ckpt_dir.is_dir():
            time.sleep(0.5)
            return
        time.sleep(0.2)
    pytest.fail("the first run did not start training")


@pytest.mark.parametrize("second", ["same output", "same work folder --resume"])
def test_a_second_run_on_the_same_output_or_work_folder_refuses(tmp_path, second):
    src = _stack(tmp_path / "in.tif")
    wd = tmp_path / "wd"
    first = _start_long_run(["restore", str(src), "-o", str(tmp_path / "a.tif"), "--method", "isonet", "--steps",
                             "100000", "--work-dir", str(wd), "--checkpoint-seconds", "1"], tmp_path)
    try:
        _wait_training(first, wd)
        if second == "same output":
            argv = ["restore", str(src), "-o", str(tmp_path / "a.tif"), "--method", "linear", "--overwrite"]
        else:
            argv = ["restore", str(src), "-o", str(tmp_path / "b.tif"), "--method", "isonet", "--steps", "1",
                    "--work-dir", str(wd), "--resume"]
        r = subprocess.run([sys.executable, "-m", "isoapp", *argv], cwd=tmp_path, env=ENV, capture_output=True,
                           text=True, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, r.stderr[-500:]
        assert len(lines) == 1 and lines[0].startswith("isoapp: error: another isoapp run is writing"), lines
        assert not (tmp_path / "a.tif").exists() and not (tmp_path / "b.tif").exists()
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    # once the first run is gone, its lock is free: the lock file it may leave blocks nothing
    assert main(["restore", str(src), "-o", str(tmp_path / "a.tif"), "--method", "linear"]) == 0


def test_locks_are_reentrant_in_one_process_and_released(tmp_path):
    from isoapp.core.errors import OutputError
    from isoapp.data.io.locks import held_locks, lock_paths

    out = tmp_path / "o.tif"
    with lock_paths([("-o", out)]):
        with lock_paths([("-o", out)]):
            assert held_locks() == [str(out)]
        code = f"from isoapp.data.io.locks import lock_paths\nwith lock_paths([('-o', {str(out)!r})]): pass"
        r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "another isoapp run is writing" in r.stderr
        assert isinstance(OutputError("x"), Exception)
    assert held_locks() == [] and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------- 10: a disk that fills
@cache
def _can_mount() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare to mount a tmpfs in a private mount namespace"
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
                       capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot mount a tmpfs here ({r.stderr.strip()[:80]})"


_FILL = textwrap.dedent("""
    import shutil, sys
    real = shutil.disk_usage
    shutil.disk_usage = lambda p: real(p)._replace(free=2**40)  # the disk fills after the preflight
    from isoapp.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("ext", [".tif", ".zarr"])
def test_disk_filling_during_a_blockwise_output_is_one_line_and_resumable(tmp_path, ext):
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    src = _stack(tmp_path / "in.tif", shape=(20, 96, 96))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = mnt / f"o{ext}"
    argv = ["restore", str(src), "-o", str(out), "--method", "linear", "--blockwise", "--block-size", "16", "32",
            "32", "-q"]
    script = tmp_path / "fill.py"
    script.write_text(_FILL)
    first = " ".join([sys.executable, str(script), *argv])
    resume = " ".join([sys.executable, "-m", "isoapp", *argv, "--resume"])
    cmd = (f"mount -t tmpfs -o size=1m tmpfs {mnt} && {{ {first}; echo rc=$? >&2; }} && "
           f"mount -o remount,size=64m {mnt} && {{ {resume}; echo rc2=$? >&2; }}")
    r = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, env=ENV, timeout=300)
    err = r.stderr
    assert "rc=2" in err, err[-800:]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("isoapp:")]
    assert len(lines) == 1 and lines[0].startswith("isoapp: error:"), lines
    assert "space" in lines[0]
    if ext == ".tif":
        assert "needs about" in lines[0] and "MiB" in lines[0]
    else:
        assert "--resume" in lines[0]  # the finished blocks are recorded: the line says how to go on
    assert "rc2=0" in err, err[-800:]
