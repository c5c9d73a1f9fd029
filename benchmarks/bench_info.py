"""Benchmark: ``isoapp info`` on a large ImageJ TIFF must not read the pixels.

Creates (once) a uint16 ImageJ hyperstack of ``--size-gb`` GB (10**9 bytes) with
``tifffile.memmap`` and fills it plane by plane (never holding the stack in RAM), then runs
``isoapp info`` in a subprocess ``--repeat`` times and reports wall time and peak RSS of the
child (``os.wait4``, POSIX only). A second row times ``describe_file`` alone in a fresh interpreter, without the CLI's
start-up (importing every sub-command). Not a unit test::

    python benchmarks/bench_info.py --size-gb 4 --dir /tmp [--keep]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

GB = 10**9


def make_stack(path: Path, size_gb: float) -> tuple[int, int, int]:
    """Write a ``(nz, 1024, 2048)`` uint16 ImageJ TIFF of about ``size_gb`` GB, plane by plane."""
    ny, nx = 1024, 2048
    nz = max(1, int(size_gb * GB) // (ny * nx * 2))
    shape = (nz, ny, nx)
    if path.exists():
        with tifffile.TiffFile(path) as tif:
            if tuple(tif.series[0].shape) == shape:
                print(f"reusing {path}")
                return shape
    print(f"creating {path}: {shape} uint16 ({nz * ny * nx * 2 / GB:.2f} GB) ...", flush=True)
    t0 = time.perf_counter()
    mm = tifffile.memmap(path, shape=shape, dtype=np.uint16, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                         metadata={"spacing": 0.8, "unit": "um", "axes": "ZYX"})
    yy, xx = np.mgrid[0:ny, 0:nx]
    base = ((yy // 64 + xx // 64) % 2 * 1000 + 100).astype(np.uint16)
    for z in range(nz):
        mm[z] = base + np.uint16(z % 512)
        if z % 64 == 63:
            mm.flush()  # keep the dirty pages (and this process's RSS) bounded
    mm.flush()
    del mm
    print(f"  created in {time.perf_counter() - t0:.1f} s")
    return shape


# A bare interpreter (-S, no numpy) launches and reaps the measured command. Linux carries a
# process's peak RSS over fork/exec, so a child spawned directly by this (large) process would
# report at least this process's peak; the launcher's floor is ~15 MiB.
_LAUNCHER = """
import os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
wall = time.perf_counter() - t0
p.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    f.write(f"{p.returncode} {wall} {usage.ru_maxrss}")
"""


def run_child(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of exactly ``cmd`` (``os.wait4``), and its stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "rusage.txt"
        res = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(result), *cmd],
                             capture_output=True, text=True)
        if not result.exists():
            raise SystemExit(f"launcher failed: {res.stderr}")
        code, wall, maxrss = result.read_text().split()
    if int(code) != 0:
        raise SystemExit(f"command failed ({code}): {' '.join(cmd)}\n{res.stderr}")
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return float(wall), int(maxrss) * scale, res.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=4.0, help="stack size in GB (10**9 bytes); default 4")
    ap.add_argument("--dir", type=Path, default=Path("/tmp"), help="folder for the test file")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each command (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the file for the next run")
    args = ap.parse_args(argv)
    path = args.dir / f"isoapp_bench_{args.size_gb:g}GB.tif"
    shape = make_stack(path, args.size_gb)
    probe = ("import sys; from isoapp.data.io import describe_file; "
             "i = describe_file(sys.argv[1]); print(i['shape'], i['anisotropy'])")
    rows = []
    try:
        for label, cmd in [
            ("baseline: import isoapp.data.io only", [sys.executable, "-c", "import isoapp.data.io, tifffile"]),
            ("describe_file (python -c)", [sys.executable, "-c", probe, str(path)]),
            ("isoapp info (python -m isoapp)", [sys.executable, "-m", "isoapp", "info", str(path)]),
        ]:
            walls, rss, out = [], 0.0, ""
            for _ in range(args.repeat):
                wall, rss_i, out = run_child(cmd)
                walls.append(wall)
                rss = max(rss, rss_i)
            rows.append((label, min(walls), float(np.median(walls)), rss))
        print(out.strip())
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            print(f"deleted {path}")
    size = os.cpu_count()
    print(f"\nmachine: {platform.platform()}, {size} CPUs, Python {platform.python_version()}")
    print(f"file: {shape} uint16 = {np.prod(shape) * 2 / GB:.2f} GB\n")
    print(f"{'command':<32} {'min wall s':>10} {'median s':>9} {'peak RSS MiB':>13}")
    for label, wmin, wmed, rss in rows:
        print(f"{label:<32} {wmin:>10.2f} {wmed:>9.2f} {rss:>13.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
