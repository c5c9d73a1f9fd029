"""Issue 16: full and read-only disks give one line and exit 2, for every format, with nothing left behind.

The tests mount a real small tmpfs in a private mount namespace (``unshare -m``), which needs
root; elsewhere they are skipped with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import tifffile

ROOT = Path(__file__).resolve().parents[1]


@cache
def _can_mount() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs in a private mount namespace"
    if shutil.which("unshare") is None:
        return "the unshare tool (util-linux) is not installed"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount a tmpfs here ({probe.stderr.strip()[:100]})"


def _in_tmpfs(mnt: Path, size: str, script: str, readonly: bool = False) -> subprocess.CompletedProcess:
    """Run ``script`` (shell) with a fresh tmpfs of ``size`` at ``mnt``, visible only to it."""
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    mnt.mkdir(exist_ok=True)
    ro = f" && mount -o remount,ro {mnt}" if readonly else ""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = f"mount -t tmpfs -o size={size} tmpfs {mnt}{ro} && {script}; rc=$?; ls -A {mnt}; exit $rc"
    return subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def stack(tmp_path) -> Path:
    path = tmp_path / "in.tif"
    data = np.random.default_rng(0).random((9, 48, 48), dtype=np.float32)
    tifffile.imwrite(path, data, imagej=True, resolution=(5, 5), metadata={"spacing": 0.8, "unit": "micron", "axes": "ZYX"})
    return path


def test_writer_on_a_full_disk_fails_cleanly(tmp_path):
    """The writers themselves (no up-front check): HDF5 used to segfault (exit 139) here."""
    mnt = tmp_path / "mnt"
    script = textwrap.dedent(f"""
        import numpy as np
        from isoapp.core.errors import OutputError
        from isoapp.data.io import write_volume
        from isoapp.core.volume import Volume
        vol = Volume(np.random.default_rng(0).random((40, 64, 64), dtype=np.float32), "ZYX", (1, 1, 1))
        for ext in (".h5", ".tif", ".zarr"):
            try:
                write_volume(vol, "{mnt}/out" + ext)
            except OutputError as exc:
                print(ext, "OutputError:", exc)
    """)
    res = _in_tmpfs(mnt, "256k", f"{sys.executable} -c '{script}'")
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    for ext, line in zip((".h5", ".tif", ".zarr"), lines, strict=False):
        assert line.startswith(f"{ext} OutputError: could not write") and "space" in line, line
    assert lines[3:] == [], f"left behind on the disk: {lines[3:]}"
    assert "Traceback" not in res.stderr


_MAIN = textwrap.dedent("""
    import shlex, sys
    from isoapp.cli import main
    for case in sys.argv[1:]:
        print("rc", main(shlex.split(case) + ["-q"]), flush=True)
""")


def _cases(mnt: Path, size: str, cases: list[str], readonly: bool = False) -> tuple[list[int], list[str]]:
    quoted = " ".join("'" + c + "'" for c in cases)
    res = _in_tmpfs(mnt, size, f"{sys.executable} -c '{_MAIN}' {quoted}", readonly=readonly)
    codes = [int(line.split()[1]) for line in res.stdout.splitlines() if line.startswith("rc ")]
    return codes, res.stderr.strip().splitlines()


def test_full_disk_is_refused_before_any_work(tmp_path, stack):
    mnt = tmp_path / "mnt"
    cases = [f"restore {stack} -o {mnt}/out{ext} --method linear" for ext in (".h5", ".tif", ".zarr")]
    codes, err = _cases(mnt, "128k", cases)
    assert codes == [2, 2, 2]
    assert len(err) == 3 and all(e.startswith("isoapp: error: not enough free space") for e in err), err


def test_read_only_disk_is_refused_before_any_work(tmp_path, stack):
    mnt = tmp_path / "mnt"
    cases = [f"restore {stack} -o {mnt}/out.tif --method linear",
             f"restore {stack} -o {tmp_path}/o.tif --steps 1 --save-model {mnt}/model",
             f"restore {stack} -o {tmp_path}/o.tif --steps 1 --work-dir {mnt}/wd",
             f"degrade {stack} -o {mnt}/d.tif --factor 2",
             f"phantom beads -o {tmp_path}/gt.tif --degraded {mnt}/d.tif --shape 9 16 16"]
    codes, err = _cases(mnt, "1m", cases, readonly=True)
    assert codes == [2] * len(cases)
    assert len(err) == len(cases) and all("the disk is read-only" in e for e in err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "mnt"]
