"""``isoapp restore`` block by block: SIGKILL halfway and resume, and the refusals before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_blockwise import _stack, _write

from isoapp.cli import main
from isoapp.data.io import read_volume
from isoapp.run.restorer import Restorer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "isoapp", *args]


@pytest.mark.slow
def test_sigkill_halfway_then_resume_recomputes_nothing(tmp_path):
    src = _write(tmp_path / "in.tif", _stack((21, 64, 64)))
    Restorer("isonet", steps=3, device="cpu").fit(read_volume(src)).save(tmp_path / "model")
    common = ["--model", str(tmp_path / "model"), "--block-size", "8", "32", "32", "--device", "cpu", "--json"]
    ref = subprocess.run(_cli("restore", str(src), "-o", str(tmp_path / "ref.zarr"), *common), env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    total = json.loads(ref.stdout)["blocks"]["total"]
    assert total >= 40

    out = tmp_path / "out.zarr"
    done = tmp_path / "out.zarr.isoapp-checkpoints" / "blocks" / "done.txt"
    proc = subprocess.Popen(_cli("restore", str(src), "-o", str(out), *common), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while time.time() - t0 < 300:
        if done.is_file() and len(done.read_text().split()) >= total // 2:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    n_done = len(done.read_text().split())
    assert 0 < n_done < total and not out.exists()

    again = subprocess.run(_cli("restore", str(src), "-o", str(out), *common), env=ENV, capture_output=True,
                           text=True, timeout=600)
    errors = [ln for ln in again.stderr.strip().splitlines() if not ln.startswith(("WARNING", "INFO"))]
    assert again.returncode == 2 and len(errors) == 1 and "--resume" in errors[0]

    res = subprocess.run(_cli("restore", str(src), "-o", str(out), *common, "--resume"), env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    blocks = json.loads(res.stdout)["blocks"]
    assert blocks["skipped"] == n_done and blocks["computed"] == total - n_done  # no finished block recomputed
    a = np.asarray(read_volume(tmp_path / "ref.zarr").data)
    b = np.asarray(read_volume(out).data)
    np.testing.assert_array_equal(a, b)  # the resumed result equals the uninterrupted one
    assert not (tmp_path / "out.zarr.isoapp-checkpoints").exists()


def test_too_little_disk_refused_before_work(tmp_path, capsys):
    big = tmp_path / "huge.tif"
    mm = tifffile.memmap(big, shape=(3000, 4096, 4096), dtype=np.uint16, imagej=True, resolution=(4.0, 4.0),
                         metadata={"spacing": 1.0, "unit": "um", "axes": "ZYX"})  # sparse: 100 GB nominal
    del mm
    rc = main(["restore", str(big), "-o", str(tmp_path / "out.zarr"), "--method", "linear", "--dtype", "uint16"])
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith(("WARNING", "INFO"))]
    assert rc == 2 and len(err) == 1 and "not enough free space" in err[0] and "GiB" in err[0]
    assert not (tmp_path / "out.zarr").exists() and not (tmp_path / "out.zarr.isoapp-checkpoints").exists()


def test_block_size_beyond_memory_refused_with_suggestion(tmp_path, capsys):
    src = _write(tmp_path / "in.tif", _stack((9, 48, 48)))
    rc = main(["restore", str(src), "-o", str(tmp_path / "o.zarr"), "--method", "linear",
               "--block-size", "4096", "16384", "16384"])
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith(("WARNING", "INFO"))]
    assert rc == 2 and len(err) == 1 and "--block-size 4096" in err[0] and "available" in err[0]
    assert not (tmp_path / "o.zarr").exists()


def test_hdf5_output_refused_for_blockwise(tmp_path, capsys):
    src = _write(tmp_path / "in.tif", _stack((9, 48, 48)))
    rc = main(["restore", str(src), "-o", str(tmp_path / "o.h5"), "--method", "linear", "--blockwise"])
    err = capsys.readouterr().err
    assert rc == 2 and "block-wise output is written to" in err and ".zarr (OME-Zarr)" in err
