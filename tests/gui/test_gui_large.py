"""Stacks too large for memory in the GUI (issue 30): opened lazily, viewed plane by plane, restored
block by block into a file, cancelled and resumed, and sent to ImageJ as a virtual stack.

"Too large" is made real by the setting a user would change (Settings > Restore in memory up to,
here 4 MiB) on a stack whose in-memory restoration needs ~40 MiB: every code path is the one a
20 GB stack takes. The ImageJ launch is replaced by a recorder (no display needed to check what
would be launched); everything else is real: files, Zarr, torch training, the QThread.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import tifffile
from gui_helpers import set_tiny_run, write_stack

from isoapp.physics.forward import upsample
from isoapp.quality.planes import InterpolatedPlanes, PlaneReader

RUN_TIMEOUT_MS = 240_000
SHAPE = (36, 128, 128)  # 1.1 MiB of uint16; in memory its restoration at F 4 needs about 38 MiB


@pytest.fixture
def big_tif(tmp_path):
    return write_stack(tmp_path / "big.tif", shape=SHAPE)


@pytest.fixture
def small_limit(window):
    window.settings.memory_limit_mb = 4
    return window


def _wait_idle(qtbot, window):
    qtbot.waitUntil(lambda: not window.runner.is_running(), timeout=30_000)


def test_large_stack_opens_lazily_and_views_read_only_shown_planes(small_limit, big_tif, qtbot):
    window = small_limit
    assert window.open_path(big_tif)
    ref = tifffile.imread(big_tif)
    assert window.input.is_lazy, "a stack over the memory limit stays in its file"
    view = window.ortho
    assert isinstance(view.data, PlaneReader)
    with pytest.raises(TypeError, match="plane by plane"):
        np.asarray(view.data)  # nothing may convert the whole stack
    view.set_cursor(7, 50, 90)
    planes = view.planes()
    assert np.array_equal(planes["xy"], ref[7]) and np.array_equal(planes["xz"], ref[:, 50, :])
    assert np.array_equal(planes["yz"], ref[:, :, 90].T)
    qtbot.waitUntil(lambda: not view.planes_pending(), timeout=10_000)  # the projection is made in the background
    mip = view._mip_image()
    n = view.data.mip_planes
    assert 0 < n < SHAPE[0] and view.mip.titles[0] == f"MIP of {n} of {SHAPE[0]} z planes"
    assert np.array_equal(mip, ref[sorted(view.data.mip_z)].max(axis=0))
    lo, hi = view.levels()
    assert ref.min() <= lo < hi <= ref.max(), "auto contrast from a sample of planes"
    assert "block by block" in window.info.text()
    assert "RAM bounded (block by block" in window.method_panel.estimate_text(), "not the in-memory RAM figure"
    # methods that need the whole stack in memory are refused before a run, with what to do
    window.method_panel.set_method("rl")
    problem = window.method_panel.problem()
    assert "too large" in problem and "Auto" in problem and "Settings" in problem
    assert not window.run_button.isEnabled()
    window.method_panel.set_method("isonet")
    assert window.method_panel.problem() == ""
    # the same stack under the default limit (half the free memory) is read into memory
    window.settings.memory_limit_mb = 0
    assert window.open_path(big_tif) and not window.input.is_lazy and isinstance(window.ortho.data, np.ndarray)


def test_large_stack_restores_block_by_block_into_a_file_and_shows_it_from_there(small_limit, big_tif, qtbot,
                                                                                   tmp_path, dialog_calls):
    window = small_limit
    window.open_path(big_tif)
    ref = tifffile.imread(big_tif).astype(np.float32)
    set_tiny_run(window, steps=0, method="linear")
    out = tmp_path / "big_iso.zarr"
    calls, answers = dialog_calls
    answers["save_file"] = lambda *a: str(out)
    stages = []
    window.run_started.connect(lambda w: w.stage.connect(lambda s, d: stages.append(s)))
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.start_run()  # asks where to write: the save dialog
    _wait_idle(qtbot, window)
    assert [c[0] for c in calls if c[0] == "save_file"] == ["save_file"]
    result = blocker.args[0]
    assert result.path == out and out.is_dir() and "blocks" in stages
    from isoapp.data.io import read_volume

    written = read_volume(out).data
    factor = result.info["factor"]
    assert factor == pytest.approx(4.0)
    assert written.dtype == np.uint16, "a uint16 stack keeps its type (and intensity units) block by block"
    assert np.abs(written - upsample(ref, factor, axis=0)).max() <= 0.5, "linear block-wise = linear in memory"
    # the result is shown from its file, beside the input interpolated plane by plane
    shown = window.compare.current_result()
    assert shown.is_lazy and shown.shape == written.shape
    qtbot.waitUntil(lambda: window.compare.left.data is not None and window.compare.right.data is not None)
    left, right = window.compare.left, window.compare.right
    assert isinstance(left.data, InterpolatedPlanes) and isinstance(right.data, PlaneReader)
    right.set_cursor(40, 64, 30)
    assert left.cursor == (40, 64, 30)
    assert np.abs(left.planes()["xz"] - right.planes()["xz"]).max() <= 0.5
    assert np.abs(left.planes()["xy"] - written[40]).max() <= 0.5
    assert "blocks" in window.statusBar().currentMessage() and out.name in window.statusBar().currentMessage()
    # the previews end on the result, its planes read from the file off the GUI thread
    panel = window.progress
    qtbot.waitUntil(lambda: panel.preview_label.text().startswith("Result at"), timeout=10_000)
    y, x = window._preview_yx
    lo, hi = window._preview_range()
    np.testing.assert_allclose(panel.images["xz"].image, (written[:, y, :] - lo) / (hi - lo), atol=1e-5)
    # metrics against a reference need stacks in memory: refused in one line, the result still shown
    from isoapp.core.volume import Volume

    window.compare.reference = Volume(np.zeros(written.shape, np.float32), "ZYX", shown.voxel_size)
    window.compare.add_result("again", shown, factor)
    assert window.compare.current_result() is shown and not window.compare.metrics
    with pytest.raises(Exception, match="in memory"):
        window.compare.compute_metrics()


def test_blockwise_run_cancelled_in_training_resumes_into_the_same_file(small_limit, big_tif, qtbot, tmp_path):
    window = small_limit
    window.open_path(big_tif)
    set_tiny_run(window, steps=40)
    out = tmp_path / "iso.ome.tif"

    def cancel_early(worker):
        worker.progress.connect(lambda ev: ev.step >= 3 and window.cancel_run())

    window.run_started.connect(cancel_early)
    with qtbot.waitSignal(window.run_cancelled, timeout=RUN_TIMEOUT_MS):
        window.start_run(output=str(out))
    _wait_idle(qtbot, window)
    window.run_started.disconnect(cancel_early)
    assert not out.exists() and window.last_run["options"]["output"] == str(out)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.start_run(resume=True)  # no dialog: the run keeps its output
    _wait_idle(qtbot, window)
    result = blocker.args[0]
    assert result.path == out and out.is_file()
    data = tifffile.imread(out)
    assert data.shape == (141, *SHAPE[1:]) and np.isfinite(data).all() and data.std() > 0


def test_output_that_is_the_input_is_refused_before_any_work(small_limit, big_tif, qtbot, dialog_calls):
    window = small_limit
    window.open_path(big_tif)
    set_tiny_run(window, steps=5)
    before = big_tif.read_bytes()
    with pytest.raises(Exception, match="input"):
        window.start_run(output=str(big_tif))
    assert not window.runner.is_running() and big_tif.read_bytes() == before


def test_lazy_result_goes_to_imagej_as_a_virtual_stack_of_its_file(small_limit, big_tif, tmp_path, monkeypatch):
    """A recorder stands in for ImageJ's launch (what would run is the check; no display needed)."""
    import os

    from fiji_bridge.external import Handoff, Launcher

    window = small_limit
    monkeypatch.setenv("DISPLAY", os.environ.get("DISPLAY", ":0"))
    window.open_path(big_tif)
    launched = []

    class Done:
        def poll(self):
            return 0

    window.fiji.handoff = Handoff(Launcher(["imagej"], "imagej"), folder=tmp_path / "handoff",
                                  popen=lambda argv, **kw: launched.append(argv) or Done())
    window.fiji.get_handoff = lambda: window.fiji.handoff
    window.fiji.push_input()
    assert len(launched) == 1 and "TIFF Virtual Stack..." in launched[0][-1] and str(big_tif) in launched[0][-1]
    assert not (tmp_path / "handoff").exists() or not any((tmp_path / "handoff").iterdir()), "nothing copied"


@pytest.mark.parametrize("fmt", ["ome-tiff", "ome-zarr"])
def test_block_wise_outputs_go_to_fiji_as_virtual_stacks_with_a_display_range(small_limit, tmp_path, fmt,
                                                                               monkeypatch):
    """The two formats a block-wise run writes, opened lazily (over the memory limit) and sent to Fiji:
    BigTIFF through Bio-Formats, OME-Zarr through n5-ij, each with isoapp's display range instead of
    ImageJ's first-plane one. A stand-in Fiji.app (a user's cannot exist here) holds the two plugins'
    jar names; the recorder shows what would run. Before, both raised "too large to copy"."""
    import os

    from fiji_bridge.external import Handoff, Launcher
    from isoapp.data.io.sinks import SinkSpec

    data = np.zeros(SHAPE, np.float32)
    data[:, 40:80, 40:80] = np.linspace(1, 300, SHAPE[0], dtype=np.float32)[:, None, None]  # first plane dim
    name = "res.ome.tif" if fmt == "ome-tiff" else "res.zarr"
    spec = SinkSpec(fmt, str(tmp_path / name), SHAPE, "ZYX", "float32", (12, 64, 64), (1.0, 0.5, 0.5))
    spec.create()
    spec.write(tuple(slice(0, n) for n in SHAPE), data)
    if fmt == "ome-zarr":
        spec.finalize(tmp_path / "done.zarr", pyramid=False)
        name = "done.zarr"
    fiji = tmp_path / "Fiji.app"
    (fiji / "jars").mkdir(parents=True)
    for jar in ("bio-formats_plugins-8.0.jar", "n5-ij-4.2.1.jar"):
        (fiji / "jars" / jar).write_bytes(b"")
    window = small_limit
    monkeypatch.setenv("DISPLAY", os.environ.get("DISPLAY", ":0"))
    assert window.open_path(tmp_path / name) and window.input.is_lazy
    launched = []
    window.fiji.handoff = Handoff(Launcher(["fiji"], "fiji", fiji), folder=tmp_path / "handoff",
                                  popen=lambda argv, **kw: launched.append(argv) or type("D", (), {"poll": lambda s: 0})())
    window.fiji.get_handoff = lambda: window.fiji.handoff
    window.fiji.push_input()
    code = launched[0][-1]
    assert ("Bio-Formats Importer" if fmt == "ome-tiff" else "HDF5/N5/Zarr/OME-NGFF") in code
    assert str((tmp_path / name).resolve()) in code and "virtual" in code
    lo, hi = (float(v) for v in code.split("setMinAndMax(")[1].split(")")[0].split(","))
    assert lo == 0 and 250 < hi <= 300, "the stack's range, not its first plane's (max 1)"
    assert not (tmp_path / "handoff").exists() or not any((tmp_path / "handoff").iterdir()), "nothing copied"


@pytest.mark.java
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run not installed (apt-get install xvfb xauth)")
def test_virtual_stack_macro_opens_the_file_in_real_imagej(tmp_path):
    """The macro the hand-off sends, run by the real ImageJ (Debian's ij.jar) in batch mode under Xvfb."""
    from fiji_bridge import locate
    from fiji_bridge.external import Handoff, Launcher

    java, jar = locate.find_java(), locate.find_ij_jar()
    if java is None or jar is None:
        pytest.skip("needs Java and /usr/share/java/ij.jar (apt-get install default-jre libij-java)")
    path = write_stack(tmp_path / "stack with space.tif", shape=(5, 20, 30))
    launched = []
    Handoff(Launcher(["imagej"], "imagej"), folder=tmp_path / "h",
            popen=lambda argv, **kw: launched.append(argv) or type("Done", (), {"poll": lambda self: 0})()
            ).show_virtual(path)
    macro = tmp_path / "m.ijm"
    macro.write_text(launched[0][-1] + ' print("OPENED " + nSlices + " " + is("Virtual Stack") + " " + getPixel(3, 2));')
    proc = subprocess.run(["xvfb-run", "-a", str(java), "-jar", str(jar), "-batch", str(macro)], capture_output=True,
                          text=True, timeout=120)
    ref = tifffile.imread(path)
    assert f"OPENED 5 1 {ref[0, 2, 3]}" in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_blockwise_run_goes_to_the_dask_scheduler_named_in_settings(small_limit, big_tif, qtbot, tmp_path,
                                                                    dialog_calls):
    """A real Dask scheduler and one worker process on loopback (``LocalCluster``), its address in Settings."""
    distributed = pytest.importorskip("distributed")
    from isoapp.run.cluster import worker_model_loads

    window = small_limit
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        window.settings.scheduler = cluster.scheduler_address
        window.open_path(big_tif)
        set_tiny_run(window, steps=0, method="linear")
        out = tmp_path / "dask.zarr"
        with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
            window.start_run(output=str(out))
        _wait_idle(qtbot, window)
        assert window.last_run is None and blocker.args[0].run.computed == blocker.args[0].run.total >= 1
        loads = client.run(worker_model_loads)
    assert sum(loads.values()) == 1, f"the blocks ran on the cluster's worker: {loads}"
    from isoapp.data.io import read_volume

    ref = tifffile.imread(big_tif).astype(np.float32)
    assert np.abs(read_volume(out).data - upsample(ref, 4.0, axis=0)).max() <= 0.5
