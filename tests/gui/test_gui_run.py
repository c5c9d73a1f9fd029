"""GUI: background training with live signals, responsiveness, cancel/resume, save, compare."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from gui_helpers import set_tiny_run

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 240_000  # the CPU is shared; a tiny run takes seconds when it is idle
MAX_GAP_S = 0.5


def _wait_idle(qtbot, window) -> None:
    # the thread has ended and its queued ``finished`` has reached the window (buttons updated)
    qtbot.waitUntil(lambda: not window.runner.is_running() and not window.cancel_button.isEnabled(),
                    timeout=30_000)


def test_train_tiny_model_relays_progress_and_previews_while_responsive(window, stack_tif, qtbot):
    from PySide6.QtCore import QTimer

    from isoapp.training.events import PreviewEvent, ProgressEvent

    window.open_path(stack_tif)
    window.ortho.set_cursor(4, 20, 30)  # previews are cut at the cursor
    set_tiny_run(window, steps=10, preview_every=2)
    progress, previews, stages = [], [], []

    def hook(worker):
        worker.progress.connect(progress.append)
        worker.preview.connect(previews.append)
        worker.stage.connect(lambda s, d: stages.append(s))

    window.run_started.connect(hook)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    t_run = time.perf_counter()
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.start_run()
        assert window.runner.is_running() and not window.run_button.isEnabled()
    t_run = time.perf_counter() - t_run
    timer.stop()
    result = blocker.args[0]
    _wait_idle(qtbot, window)

    train = [e for e in progress if isinstance(e, ProgressEvent) and e.stage == "isonet"]
    assert [e.step for e in train] == list(range(1, 11)) and all(e.loss is not None for e in train)
    assert any(e.stage == "restore" for e in progress) and {"train", "restore"} <= set(stages)
    assert len(previews) == 5 and all(isinstance(p, PreviewEvent) for p in previews)
    assert previews[-1].planes["xz"].shape == (33, 48) and previews[-1].planes["yz"].shape == (33, 48)
    # the panel shows what was relayed
    panel = window.progress
    assert panel.bar.value() == 100 and len(panel.losses) == 10 and panel.preview_count == 5
    # the run ended: the previews show the result at the cursor (issue 30), in the live previews' units
    last = previews[-1].planes["xz"]
    np.testing.assert_allclose(panel.images["xz"].image, last, atol=0.01 * float(np.ptp(last)))
    assert "IsoNet" in panel.titles["xz"].text
    assert "y=20, x=30" in panel.preview_label.text() or "centre" in panel.preview_label.text()
    # result: on the isotropic grid, shown in Compare
    assert result.volume.shape == (33, 48, 48)
    assert result.volume.voxel_size == pytest.approx((0.2, 0.2, 0.2))
    assert window.tabs.currentWidget() is window.compare_tab
    assert window.compare.current_result() is result.volume
    qtbot.waitUntil(lambda: window.compare.right.data is not None, timeout=5000)  # shown one turn later
    assert window.compare.right.data.shape == (33, 48, 48) and window.compare.left.data.shape == (33, 48, 48)
    assert window.run_button.isEnabled() and not window.cancel_button.isEnabled()
    # the event loop kept turning while torch trained in the worker thread
    # (a 10 ms timer, ticking through the run however fast the machine; the GIL spaces the ticks out)
    gaps = np.diff(ticks)
    assert len(ticks) >= 3 and ticks[-1] - ticks[0] >= 0.5 * t_run - MAX_GAP_S, (len(ticks), t_run)
    assert gaps.max() < MAX_GAP_S, f"event loop blocked for {gaps.max() * 1000:.0f} ms"
    assert window.settings.get_json("timings"), "the measured speed is kept for the next estimate"
    assert "from your last run" in window.method_panel.estimate_text()


def test_cancel_leaves_checkpoint_resume_finishes_and_save_is_calibrated(window, stack_tif, qtbot, tmp_path):
    from isoapp.data.io import read_volume
    from isoapp.gui.worker import live_threads

    window.open_path(stack_tif)
    set_tiny_run(window, steps=12)
    steps_seen: list[int] = []

    def on_progress(ev):
        if ev.stage == "isonet":
            steps_seen.append(ev.step)
            if ev.step == 3:
                window.cancel_run()

    window.run_started.connect(lambda w: w.progress.connect(on_progress))
    with qtbot.waitSignal(window.run_cancelled, timeout=RUN_TIMEOUT_MS) as blocker:
        t_start = time.perf_counter()
        window.start_run()
        assert len(live_threads()) == 1
    assert "checkpoint saved" in blocker.args[0]
    assert max(steps_seen) < 12 and time.perf_counter() - t_start < RUN_TIMEOUT_MS / 1000
    work = window.last_run["options"]["work_dir"]
    ckpt = os.path.join(work, "isonet.ckpt")
    assert os.path.isfile(ckpt), os.listdir(work)
    _wait_idle(qtbot, window)
    assert window.resume_button.isEnabled() and window.compare.current_result() is None

    steps_seen.clear()
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.resume_button.click()
    result = blocker.args[0]
    _wait_idle(qtbot, window)
    assert steps_seen and steps_seen[0] > 1 and steps_seen[-1] == 12, "resumed from the checkpoint"
    assert result.info["steps"] == 12
    assert not os.path.exists(work), "the checkpoint folder is removed once the run has finished"
    assert not window.resume_button.isEnabled()

    out = window.save_result(tmp_path / "restored.tif")
    assert out.name == "restored.tif"
    back = read_volume(out)
    assert back.spatial_shape == (33, 48, 48) and back.dtype == np.float32
    assert back.voxel_size == pytest.approx((0.2, 0.2, 0.2), rel=1e-4)
    np.testing.assert_allclose(np.asarray(back.data), result.volume.data, rtol=1e-6)
    h5 = window.save_result(tmp_path / "restored.h5")
    assert read_volume(h5).voxel_size == pytest.approx((0.2, 0.2, 0.2), rel=1e-4)
    left = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert left == ["isoapp-settings.ini", "restored.h5", "restored.tif", "stack.tif"], left


def test_save_dialog_refuses_to_overwrite_input(window, stack_tif, qtbot, dialog_calls):
    calls, answers = dialog_calls
    window.open_path(stack_tif)
    set_tiny_run(window, steps=1, method="linear")
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        window.start_run()
    _wait_idle(qtbot, window)
    answers["save_file"] = str(stack_tif)
    window.save_action.trigger()
    errors = [c for c in calls if c[0] == "error"]
    assert errors and "stack.tif" in errors[0][1][2]
    assert window.input.spatial_shape == (9, 48, 48)
    answers["save_file"] = str(stack_tif.with_name("out"))  # no extension: ImageJ TIFF
    window.save_action.trigger()
    assert stack_tif.with_name("out.tif").is_file()


def test_failed_run_is_a_dialog_and_app_stays_usable(window, stack_tif, qtbot, dialog_calls):
    import tifffile

    calls, _ = dialog_calls
    window.open_path(stack_tif)
    set_tiny_run(window, steps=2)
    mp = window.method_panel
    mp.psf_kind.setCurrentIndex(3)  # measured PSF file
    mp.psf_path.setText(str(stack_tif.with_name("no_psf.tif")))
    mp._changed()
    # a missing file is caught before anything runs: Run is disabled and says why
    assert not window.run_button.isEnabled() and "no_psf.tif" in window.run_button.toolTip()
    psf2d = stack_tif.with_name("psf2d.tif")
    tifffile.imwrite(psf2d, np.ones((9, 9), np.float32))
    mp.psf_path.setText(str(psf2d))
    mp._changed()
    assert window.run_button.isEnabled()
    with qtbot.waitSignal(window.run_failed, timeout=RUN_TIMEOUT_MS) as blocker:
        window.start_run()
    _wait_idle(qtbot, window)
    assert "3D" in blocker.args[0]
    assert [c for c in calls if c[0] == "error"]
    assert window.run_button.isEnabled() and not window.resume_button.isEnabled()
    # a failed run does not show a full bar (defect 7)
    assert window.progress.bar.value() == 0 and window.progress.bar.format() == "failed"


def test_compare_modes_disagreement_and_metrics(window, tmp_path, qtbot):
    from isoapp.core.volume import Volume
    from isoapp.quality.phantoms import make_phantom

    ph = make_phantom("tubes", (17, 32, 32), factor=4)
    vol = Volume(np.asarray(ph.degraded.data), voxel_size=ph.degraded.voxel_size, name="phantom")
    window.set_volume(vol)
    for method in ("linear", "cubic"):
        set_tiny_run(window, steps=1, method=method)
        with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
            window.start_run()
        _wait_idle(qtbot, window)
    cmp = window.compare
    assert set(cmp.results) == {"Linear interpolation", "Cubic-spline interpolation"}  # names for people
    cmp.mode.setCurrentText("Wipe")
    cmp.wipe.setValue(50)
    res = cmp.current_result()
    planes = cmp.single.planes()
    z, y, _x = cmp.single.cursor
    np.testing.assert_allclose(planes["xy"][:, 20:], np.asarray(res.data)[z][:, 20:], rtol=1e-6)
    np.testing.assert_allclose(planes["xy"][:, :10], np.asarray(cmp.before.data)[z][:, :10], rtol=1e-6)
    cmp.mode.setCurrentText("Toggle")
    cmp.toggle.setChecked(False)
    np.testing.assert_allclose(cmp.single.planes()["xz"], np.asarray(cmp.before.data)[:, y, :], rtol=1e-6)
    cmp.mode.setCurrentText("Uncertainty")
    assert cmp.stack.currentWidget() is cmp.diff and cmp.diff.data.shape == res.shape
    assert float(cmp.diff.data.max()) > 0
    # a linked cursor in side-by-side mode
    cmp.mode.setCurrentText("Side by side")
    cmp.left.set_cursor(3, 4, 5)
    assert cmp.right.cursor == (3, 4, 5)
    # metrics against a reference on the output grid
    ref = tmp_path / "gt.tif"
    import tifffile

    gt = np.asarray(ph.gt_iso.data, np.float32)
    assert gt.shape == res.shape
    tifffile.imwrite(ref, gt, imagej=True)
    window.load_reference(ref)
    assert set(cmp.metrics) == {"input (linear interpolation)", "Linear interpolation", "Cubic-spline interpolation"}
    assert cmp.table.rowCount() == 3 and cmp.table.isVisibleTo(window)
    assert all(np.isfinite(m["ssim"]) for m in cmp.metrics.values())


def test_residual_view_shows_the_runs_data_consistency_in_noise_sigmas(window, stack_tif, qtbot):
    """The in-memory run keeps channel 0's residual; Compare > Residual shows it signed, at ±3 sigma,
    on the recorded planes, equal to what the CLI writes with --residual-map (the same core call)."""
    from isoapp.gui.compare import RESIDUAL_RANGE

    window.open_path(stack_tif)
    set_tiny_run(window, steps=5)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.start_run()
    _wait_idle(qtbot, window)
    result = blocker.args[0]
    assert result.residual is not None and result.residual.shape == window.input.shape
    cmp = window.compare
    cmp.mode.setCurrentText("Residual")
    assert cmp.stack.currentWidget() is cmp.diff
    assert np.array_equal(cmp.diff.data, result.residual) and cmp.diff.voxel == tuple(window.input.voxel_size)
    assert cmp.diff.levels() == (-RESIDUAL_RANGE, RESIDUAL_RANGE) and cmp.diff.lut.currentText() == "diverging"
    assert "noise sigma" in cmp.diff.title.text()
    assert "Compare &gt; View &gt; Residual" in window.report.text.text()
    # a result without a residual says why instead of showing another result's
    cmp.add_result("no residual", result.volume, 4.0)
    cmp.mode.setCurrentText("Side by side")
    cmp.mode.setCurrentText("Residual")
    assert cmp.stack.currentWidget() is cmp.empty and "no data-consistency residual" in cmp.empty.text()
