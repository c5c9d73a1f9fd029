"""The Dask engine with a real ``dask scheduler`` and two ``dask worker`` processes on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from test_blockwise import _stack, _write  # noqa: E402

from isoapp.core.errors import ConfigError  # noqa: E402
from isoapp.data.io import read_volume  # noqa: E402
from isoapp.run.restorer import Restorer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-threaded workers started as separate processes; yields the address."""
    d = tmp_path_factory.mktemp("dask")
    sfile = d / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(sfile)],
                              env=env, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        t0 = time.time()
        while not sfile.exists() and time.time() - t0 < 60:
            time.sleep(0.2)
        address = json.loads(sfile.read_text())["address"]
        for i in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                           "--nthreads", "1", "--no-dashboard", "--local-directory", str(d / f"w{i}"),
                                           "--name", f"w{i}"], env=env, cwd=d, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_cluster_result_equals_local_and_model_sent_once(tmp_path, cluster):
    from distributed import Client

    from isoapp.run.cluster import worker_model_loads

    vol = read_volume(_write(tmp_path / "in.tif", _stack((15, 96, 96))), lazy=True)
    r = Restorer("isonet", steps=3, device="cpu").fit(vol.load())
    kw = dict(block=(16, 48, 48), chunk=(8, 24, 24))
    local = r.predict_to(vol, tmp_path / "local.zarr", **kw)
    dist = r.predict_to(vol, tmp_path / "dist.zarr", scheduler=cluster, **kw)
    assert dist.run.computed == dist.run.total == local.run.total >= 8
    a = np.asarray(read_volume(local.path).data)
    b = np.asarray(read_volume(dist.path).data)
    assert np.abs(a - b).max() <= 1e-5 * float(np.abs(a).max())
    with Client(cluster, timeout="30s") as c:
        loads = c.run(worker_model_loads)
    assert sum(loads.values()) >= 1 and max(loads.values()) == 1, loads  # once per worker, not per block


def test_unreachable_scheduler_one_line_nothing_written(tmp_path):
    vol = read_volume(_write(tmp_path / "in.tif", _stack((9, 48, 48))), lazy=True)
    r = Restorer("linear", device="cpu").fit(vol.load())
    t0 = time.time()
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9") as err:
        r.predict_to(vol, tmp_path / "out.zarr", scheduler="tcp://127.0.0.1:9", work_dir=tmp_path / "wd")
    assert "\n" not in str(err.value) and time.time() - t0 < 60
    assert not (tmp_path / "out.zarr").exists() and not (tmp_path / "wd").exists()


@pytest.mark.slow
def test_cli_local_workers_equal_in_memory(tmp_path):
    from isoapp.cli import main

    src = _write(tmp_path / "in.tif", _stack((11, 80, 80)))
    assert main(["restore", str(src), "-o", str(tmp_path / "mem.tif"), "--method", "cubic", "--in-memory"]) == 0
    assert main(["restore", str(src), "-o", str(tmp_path / "w.zarr"), "--method", "cubic", "--workers", "2",
                 "--block-size", "16", "32", "32"]) == 0
    a = read_volume(tmp_path / "mem.tif").data
    b = np.asarray(read_volume(tmp_path / "w.zarr").data)
    assert np.abs(a - b).max() <= 1e-5 * float(np.abs(a).max())
    assert not (tmp_path / "w.zarr.isoapp-checkpoints").exists()
