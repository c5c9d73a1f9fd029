"""Issue 30: what a new user ran into on the real stack (previews, Fiji display range, report wording,
the laptop layout, wheel direction, Home after a zoom, the Compare readout, the empty window)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PySide6.QtCore import QPointF, Qt

RUN_TIMEOUT_MS = 240_000  # a tiny run on the shared CPU


def _wheel(box, delta, mods=Qt.KeyboardModifier.NoModifier):
    from PySide6.QtWidgets import QGraphicsSceneWheelEvent

    ev = QGraphicsSceneWheelEvent()
    ev.setDelta(delta)
    ev.setModifiers(mods)
    ev.setScenePos(box.sceneBoundingRect().center())
    ev.setPos(QPointF(box.width() / 2, box.height() / 2))
    box.wheelEvent(ev)


def _settle(qtbot, ms: int = 50) -> None:
    from PySide6.QtWidgets import QApplication

    for _ in range(3):
        QApplication.processEvents()
        qtbot.wait(ms)


# ---------------------------------------------------------------------------------------- item 6
def test_wheel_down_steps_to_the_next_slice_as_in_fiji(window, stack_tif):
    """Fiji: wheel down (negative delta) shows the next slice (z + 1), wheel up the previous one."""
    window.open_path(stack_tif)
    ov = window.ortho
    ov.set_cursor(4, 24, 24)
    _wheel(ov.xy.box, -120)  # wheel down, towards the user
    assert ov.cursor == (5, 24, 24)
    _wheel(ov.xy.box, 120)
    _wheel(ov.xy.box, 120)
    assert ov.cursor == (3, 24, 24)


# ---------------------------------------------------------------------------------------- item 7
def test_home_resets_the_view_after_a_wheel_zoom_without_a_click(window, stack_tif, qtbot):
    """Ctrl+wheel zooms; Home, pressed right after (no click that would move the cursor), fits again."""
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    window.open_path(stack_tif)
    window.activateWindow()
    _settle(qtbot)
    ov = window.ortho
    span = np.diff(ov.xy.box.viewRange()[0])[0]
    window.method_panel.steps.setFocus()  # the focus is elsewhere, as after using the side panel
    _settle(qtbot)
    cursor = ov.cursor
    # a real wheel event on the view's canvas (Ctrl held: zoom)
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QWheelEvent

    vp = ov.graphics.viewport()
    centre = ov.graphics.mapFromScene(ov.xy.box.sceneBoundingRect().center())
    ev = QWheelEvent(QPointF(centre), QPointF(vp.mapToGlobal(centre)), QPoint(0, 0), QPoint(0, 120),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier, Qt.ScrollPhase.NoScrollPhase,
                     False)
    QApplication.sendEvent(vp, ev)
    _settle(qtbot)
    assert np.diff(ov.xy.box.viewRange()[0])[0] < 0.95 * span, "Ctrl+wheel zooms"
    target = QApplication.focusWidget() or window
    QTest.keyClick(target, Qt.Key.Key_Home)
    _settle(qtbot)
    assert np.diff(ov.xy.box.viewRange()[0])[0] == pytest.approx(span, rel=0.05)
    assert ov.cursor == cursor


# ---------------------------------------------------------------------------------------- item 10
def test_empty_window_shows_no_factor(window):
    mp = window.method_panel
    assert mp.volume is None
    assert "4" not in mp.factor.text()
    assert mp.factor.text().strip() in ("", "—")


def test_factor_shows_after_opening_and_blank_again_when_closed(window, stack_tif):
    window.open_path(stack_tif)
    assert window.method_panel.factor.text().startswith("4")
    window.method_panel.set_volume(None)
    assert window.method_panel.factor.text().strip() in ("", "—")


# ---------------------------------------------------------------------------------------- item 5
def test_view_menu_toggles_progress_and_log_docks(window, qtbot):
    window.resize(1366, 768)
    for dock in (window.progress_dock, window.log_dock):
        act = dock.toggleViewAction()
        assert act.isEnabled(), act.text()
        assert dock.isVisible()
        act.trigger()
        _settle(qtbot, 10)
        assert not dock.isVisible()
        act.trigger()
        _settle(qtbot, 10)
        assert dock.isVisible()


def _overlaps(ov) -> list[str]:
    """What lies over an image: the scale bar over XY, or 'MIP along z' over the MIP."""
    found = []
    xy_img = ov.xy.image.sceneBoundingRect()
    bar = ov.scale_bar.bar.sceneBoundingRect() | ov.scale_bar.text.sceneBoundingRect()
    if ov.scale_bar.isVisible() and bar.intersects(xy_img):
        found.append(f"scale bar {bar} over XY {xy_img}")
    p = ov.mip  # the long title (XY, XZ, YZ are two letters in a corner, as in Fiji)
    if p.label.isVisible() and p.label.sceneBoundingRect().intersects(p.image.sceneBoundingRect()):
        found.append(f"title {p.label.toPlainText()!r} over its image")
    return found


@pytest.mark.parametrize("size", [(330, 620), (700, 360), (420, 420)])
@pytest.mark.parametrize("shape,voxel", [((37, 118, 132), (4.0, 0.83, 0.83)), ((9, 48, 48), (0.8, 0.2, 0.2))])
def test_scale_bar_and_titles_leave_the_images_free(qtbot, shape, voxel, size):
    """Narrow (Compare, side by side), wide or square: the scale bar and 'MIP along z' never cover an image."""
    from isoapp.core.volume import Volume
    from isoapp.gui.orthoview import OrthoView

    rng = np.random.default_rng(0)
    ov = OrthoView(None, title="t")
    qtbot.addWidget(ov)
    ov.resize(*size)
    ov.show()
    ov.set_volume(Volume(rng.random(shape).astype(np.float32), axes="ZYX", voxel_size=voxel, name="v"))
    _settle(qtbot)
    ov.reset_view()
    _settle(qtbot)
    assert ov.mip.label.isVisible()
    assert _overlaps(ov) == []


# ---------------------------------------------------------------------------- items 5 and 8: Compare
def _compare_at_laptop_size(window, tmp_path, qtbot):
    """The nuclei stack's shape and calibration, a result in Compare, the report shown, at 1366x768."""
    from gui_helpers import write_stack

    from isoapp.gui.compare import interpolated_input

    window.resize(1366, 768)
    window.open_path(write_stack(tmp_path / "n.tif", shape=(37, 118, 132), voxel=(4.0, 0.83, 0.83)))
    res = interpolated_input(window.input, 4.8)
    res = res.with_data(np.asarray(res.data) * 1.5, name="res")
    window.compare.add_result("Auto: IsoNet", res, 4.8)
    window.report.show_info(REPORT_INFO, "Auto: IsoNet")
    window.tabs.setCurrentWidget(window.compare_tab)
    _settle(qtbot)
    return window.compare


REPORT_INFO = {
    "method": "auto", "chosen": "isonet",
    "candidates": [{"method": "isonet", "heldout_gain_db": 9.91}, {"method": "selfnet", "heldout_gain_db": 5.1}],
    "degradation": {"source": "estimated", "axial_fwhm_um": 8.29, "axial_sigma_px": 4.25,
                    "noise_std_at_half": 0.0153, "noise_gain": 0.000458},
    "heldout": {"psnr_gain_db": 9.91, "psnr_gain_se_db": 1.54, "psnr_method": 40.1, "psnr_interp": 30.2,
                "ssim_gain": 0.05, "n_planes": 4},
}


def test_compare_views_get_more_room_at_1366x768(window, tmp_path, qtbot):
    """Before: each Compare view's canvas was 347x188 px here (XY image ~57x51 px); the shared display
    controls sit once above both views now, so the canvases are taller and of the same size."""
    cmp = _compare_at_laptop_size(window, tmp_path, qtbot)
    left, right = cmp.left.graphics.size(), cmp.right.graphics.size()
    assert abs(left.height() - right.height()) <= 2, "linked 1:1: both canvases have the same height"
    assert left.height() >= 250, left
    img = cmp.left.xy.image.sceneBoundingRect()
    assert img.width() * img.height() >= 1.5 * 57 * 51, img


def test_compare_cursor_readout_is_not_clipped(window, tmp_path, qtbot):
    """Each status line fits its label, and the cursor's "(z, y, x µm)" shows whole."""
    cmp = _compare_at_laptop_size(window, tmp_path, qtbot)
    for view in (cmp.left, cmp.right):
        view.set_cursor(86, 59, 66)
        zc, yc, xc = view.cursor_physical()
        u, v = 30.0, 40.0
        hover = view.hover("xy", u, v)
        assert hover
        lines = view.status.text().split("\n")
        room = view.status.contentsRect().width()
        fm = view.status.fontMetrics()
        for line in lines:
            assert fm.horizontalAdvance(line) <= room, (line, room)
        assert f"({zc:.2f}, {yc:.2f}, {xc:.2f} µm)" in lines[0], lines
        assert hover[hover.rindex("("):] in lines[1], (hover, lines)


# ---------------------------------------------------------------------------------------- item 4
def test_report_shows_each_check_with_its_meaning():
    """No bare bold dB: the held-out gain says what it measures and that it is optimistic."""
    import re

    from isoapp.gui.report_panel import report_html

    html = report_html(REPORT_INFO, "Auto: IsoNet")
    bold = re.findall(r"<b>(.*?)</b>", html)
    assert not [b for b in bold if "dB" in b], bold
    text = re.sub(r"<[^>]+>", "", html)
    assert ("held-out check on 4 lateral planes degraded by the estimated model (optimistic; see docs): "
            "+9.91 ± 1.54 dB over linear") in text, text
    assert "degradation model" in text.lower() and "8.29 µm" in text
    given = dict(REPORT_INFO, degradation=dict(REPORT_INFO["degradation"], source="given"))
    assert "degraded by the given model" in re.sub(r"<[^>]+>", "", report_html(given))


# ---------------------------------------------------------------------------------------- item 3
def test_float_result_sent_to_fiji_carries_the_stack_display_range(window, stack_tif, tmp_path, monkeypatch):
    """ImageJ takes a float stack's display range from slice 1 unless the TIFF gives one: slice 1 here
    peaks at 10, the middle slices at ~385; the file says min/max from the whole stack."""
    import os

    from fiji_bridge.external import Handoff, Launcher

    monkeypatch.setenv("DISPLAY", os.environ.get("DISPLAY", ":0"))

    class Done:
        def poll(self):
            return 0

    window.open_path(stack_tif)
    rng = np.random.default_rng(1)
    data = rng.random((36, 48, 48)).astype(np.float32) * 10
    data[8:28] *= 38.5  # bright middle slices
    res = window.input.with_data(data, voxel_size=(0.2, 0.2, 0.2), name="restored")
    window.compare.results["IsoNet"] = res
    window.compare.result_box.addItem("IsoNet")
    launched = []
    window.fiji.handoff = Handoff(Launcher(["imagej"], "imagej"), folder=tmp_path / "handoff",
                                  popen=lambda argv, **kw: launched.append(argv) or Done())
    window.fiji.get_handoff = lambda: window.fiji.handoff
    window.fiji.actions["push"].trigger()
    assert launched, "sent"
    with tifffile.TiffFile(window.fiji.last_sent) as tif:
        ij = tif.imagej_metadata
        assert tif.series[0].shape == (36, 48, 48)
        np.testing.assert_array_equal(tif.asarray(), data)
    lo, hi = float(ij["min"]), float(ij["max"])
    assert hi > 10 * float(data[0].max()) and hi <= float(data.max())
    assert hi >= np.percentile(data, 99), (lo, hi)
    assert 0 <= lo < np.percentile(data, 5)


# ---------------------------------------------------------------------------------------- item 2
def _nuclei_planes():
    """Live-preview planes of the nuclei stack on the output grid: (Z', X) and (Z', Y), z taller than wide."""
    rng = np.random.default_rng(0)
    return {"xz": rng.random((178, 132)).astype(np.float32), "yz": rng.random((178, 118)).astype(np.float32)}


def test_previews_fill_their_panel_at_the_data_aspect(qtbot):
    """In a 310x460 px preview area the four planes were ~74x100 px each (one column); they are
    arranged (1x4, 2x2 or 4x1) so each image is as large as the panel allows at its aspect."""
    from isoapp.gui.progress_panel import ProgressPanel

    panel = ProgressPanel()
    qtbot.addWidget(panel)
    panel.resize(320, 760)
    panel.show()
    panel.start((0.83, 0.83, 0.83), "the cursor")
    panel.show_inputs(_nuclei_planes())
    _settle(qtbot)
    assert abs(panel.preview.width() - 310) < 40 and panel.preview.height() > 380, panel.preview.size()
    w, h = panel.preview.width(), panel.preview.height()
    best = max(min(w / c / 132, (h / (4 // c) - 20) / 178) for c in (1, 2, 4))  # px per µm-pixel
    for key in ("in_xz", "xz", "in_yz", "yz"):
        rect = panel.images[key].sceneBoundingRect()
        assert rect.height() >= 0.7 * best * 178, (key, rect, best)  # was 0.37 in one column


def test_previews_are_labelled_with_the_method_and_show_autos_choice(window, stack_tif, qtbot):
    from types import SimpleNamespace

    from isoapp.training.events import PreviewEvent

    window.open_path(stack_tif)
    panel = window.progress
    planes = {"xz": np.zeros((36, 48), np.float32), "yz": np.zeros((36, 48), np.float32)}
    panel.start((0.2, 0.2, 0.2), "the cursor")
    panel.show_inputs(planes)
    window._preview_yx = (24, 24)
    panel.on_preview(PreviewEvent("selfnet_e0_stage1", 5, {"xz": planes["xz"] + 1, "yz": planes["yz"] + 1}))
    assert "Self-Net" in panel.titles["xz"].text and "Self-Net" in panel.preview_label.text()
    # auto kept IsoNet: the previews end on IsoNet's result, not on the discarded Self-Net
    data = np.asarray(window.input.data, np.float32)
    res = window.input.with_data(np.repeat(data, 4, axis=0) * 2.0, voxel_size=(0.2, 0.2, 0.2), name="r")
    result = SimpleNamespace(volume=res, info={"method": "auto", "chosen": "isonet", "factor": 4.0},
                             train_seconds=1.0, restore_seconds=0.1, before=None)
    window._run_finished(result)
    _settle(qtbot)
    assert "IsoNet" in panel.titles["xz"].text and "Self-Net" not in panel.titles["xz"].text
    assert "IsoNet" in panel.preview_label.text()
    shown = panel.images["xz"].image
    assert shown.shape == (36, 48) and float(np.ptp(shown)) > 0


# ---------------------------------------------------------------------------------------- item 1
def _auto_estimate(window, tmp_path):
    from gui_helpers import write_stack

    window.open_path(write_stack(tmp_path / "n.tif", shape=(37, 118, 132), voxel=(4.0, 0.83, 0.83)))
    mp = window.method_panel
    mp.set_method("auto")
    mp.preset.setCurrentText("fast")
    mp.steps.setValue(0)
    mp.device.setCurrentText("cpu")
    return mp.estimate()


def test_auto_estimate_counts_its_candidates_real_steps(window, tmp_path):
    """auto trains IsoNet (600 steps) then Self-Net (3 epochs x (200 + 200) steps): 1800 loops, not
    the 1000 of a hand-written constant (the whole-run ETA then sat at 0:04 for two minutes); and each
    candidate again for its axial check (the estimate once said "train 40 s" for a 93 s run)."""
    est = _auto_estimate(window, tmp_path)
    assert est.train_loops == 2 * (600 + 1200), est


def test_whole_run_eta_is_monotone_and_close_after_a_fifth(window, tmp_path):
    """A simulated auto run at the estimate's own speed: the ETA never rises and, from 20 % of the
    run on, is within 25 % of the time really left."""
    from isoapp.gui.estimate import RunClock

    est = _auto_estimate(window, tmp_path)
    # the run is as fast as predicted, candidate by candidate: a Self-Net loop costs more than an
    # IsoNet one (against their average, the ETA said 273 s at 20 % of a 383 s run on a real stack)
    (n_iso, s_iso), (n_sn, s_sn) = est.parts
    assert s_sn / n_sn > 1.1 * s_iso / n_iso
    selfnet = [(f"selfnet_e{e}_stage{k}", 200) for e in range(3) for k in (1, 2)]
    stages = ([("isonet", 600, s_iso / n_iso), ("axial check", 600, s_iso / n_iso)]
              + [(name, n, s_sn / n_sn) for name, n in selfnet]  # the sub-runs' progress is relayed as "axial check"
              + [("axial check", 200, s_sn / n_sn)] * 6)
    events, t = [], 0.0
    for stage, n, per in stages:
        for step in range(1, n + 1):
            t += per
            events.append((stage, step, n, True, t))
    restore = max(est.restore_s, per)
    for i in range(1, 11):
        events.append(("restore", i, 10, False, t + restore * i / 10))
    end = events[-1][-1]
    clock = RunClock(est, start=0.0)
    last = None
    for stage, step, total, training, now in events:
        clock.update(stage, step, total, training, now=now)
        eta = getattr(clock, "eta", clock.remaining)(now)  # (before issue 30: remaining)
        if last is not None:
            assert eta <= last + 1e-9, (stage, step, eta, last)
        last = eta
        if now >= 0.2 * end and end - now > 5 * per:
            assert abs(eta - (end - now)) <= 0.25 * (end - now), (stage, step, eta, end - now)


def test_eta_follows_a_run_much_slower_than_predicted(window, tmp_path):
    """On a busy machine (here 20x slower than the prior) the countdown starts from the measured speed
    instead of sitting at 0:00 from the prior."""
    from isoapp.gui.estimate import RunClock

    est = _auto_estimate(window, tmp_path)
    per = 20 * est.train_s / est.train_loops
    clock = RunClock(est, start=0.0)
    t = 0.0
    for step in range(1, 301):
        t += per
        clock.update("isonet", step, 600, True, now=t)
        eta = clock.eta(t)
    truth = (3600 - 300) * per
    assert abs(eta - truth) <= 0.25 * truth, (eta, truth)


def test_header_names_the_method_epoch_and_the_runs_real_steps(window, tmp_path):
    from isoapp.gui.estimate import RunClock

    est = _auto_estimate(window, tmp_path)
    panel = window.progress
    panel.clock = RunClock(est)
    panel.set_stage("selfnet_e1_stage2", "training 200 steps")
    text = panel.stage_label.text()
    assert "Self-Net" in text and "epoch 2" in text and "stage 2" in text and "200 steps" in text
    assert "3600" in text, text  # 1800 steps of the two candidates, and as many for their axial checks


def test_a_resumed_run_does_not_teach_a_wrong_speed(window, stack_tif):
    """A resumed run's training time covers only the steps after the resume: it taught "28 s" for a
    run of about 55 s. Its training speed is not recorded (its restore speed is)."""
    from types import SimpleNamespace

    window.open_path(stack_tif)
    vol = window.input
    result = SimpleNamespace(volume=vol, info={"method": "isonet", "preset": "fast", "device": "cpu", "steps": 300},
                             train_seconds=28.0, restore_seconds=1.0)
    window._run_resumed = True
    window._record_timing(result)
    entry = window._load_timings()["isonet-fast-cpu"]
    assert "s_per_voxel" in entry and "s_per_loop" not in entry
    window._run_resumed = False  # a whole run teaches it; a later resumed run keeps what it taught
    window._record_timing(SimpleNamespace(**{**vars(result), "train_seconds": 55.0}))
    window._run_resumed = True
    window._record_timing(result)
    assert window._load_timings()["isonet-fast-cpu"]["s_per_loop"] == pytest.approx(55.0 / 300)


def test_the_axial_checks_training_steps_move_the_clock():
    """The axial check's sub-run is relayed without losses (its curve is not the run's); its steps
    were then not counted, and the whole-run ETA stood still through the checks (45 % of an auto
    run on nuclei_aniso_4um). Its training steps count; its restore's progress does not."""
    from isoapp.gui.estimate import is_training_step
    from isoapp.methods.thinned import check_events
    from isoapp.training.events import ProgressEvent

    seen = []
    relay = check_events(seen.append)
    relay(ProgressEvent("stage1", 3, 200, loss=0.5))
    relay(ProgressEvent("restore", 2, 10))
    assert [ev.stage for ev in seen] == ["axial check", "axial check"] and seen[0].loss is None
    assert [is_training_step(ev) for ev in seen] == [True, False]
    assert is_training_step(ProgressEvent("isonet", 1, 600, loss=0.1))
    assert not is_training_step(ProgressEvent("restore", 1, 10))


def test_learnt_speed_counts_the_axial_checks_loops_and_autos_candidates(window, stack_tif):
    """``train_seconds`` includes the axial check's second training: divided by the first run's
    loops alone, the learnt speed (and the next estimate) was twice too slow. Auto learns each
    candidate's speed under the candidate's own key, which its estimate adds up."""
    from types import SimpleNamespace

    window.open_path(stack_tif)
    info = {"method": "isonet", "preset": "fast", "device": "cpu", "steps": 300, "axial": {"psnr_gain_db": 1.0}}
    window._record_timing(SimpleNamespace(volume=window.input, info=info, train_seconds=60.0, restore_seconds=1.0))
    assert window._load_timings()["isonet-fast-cpu"]["s_per_loop"] == pytest.approx(60.0 / 600)
    skipped = {**info, "axial": {"skipped": "too few planes"}}
    window._record_timing(SimpleNamespace(volume=window.input, info=skipped, train_seconds=60.0, restore_seconds=1.0))
    assert window._load_timings()["isonet-fast-cpu"]["s_per_loop"] == pytest.approx(60.0 / 300)
    trials = [{"method": "isonet", "train_s": 83.4, "steps": 600, "axial_gain_db": 1.0},
              {"method": "selfnet", "train_s": 258.6, "steps": 600, "axial_gain_db": 0.5}]
    auto = {"method": "auto", "preset": "fast", "device": "cpu", "steps": 1000, "chosen": "isonet",
            "candidates": trials}
    window._record_timing(SimpleNamespace(volume=window.input, info=auto, train_seconds=342.0, restore_seconds=2.0))
    t = window._load_timings()
    assert t["isonet-fast-cpu"]["s_per_loop"] == pytest.approx(83.4 / 1200)
    assert t["selfnet-fast-cpu"]["s_per_loop"] == pytest.approx(258.6 / 2400)  # two loops a step
    assert "auto-fast-cpu" not in t
    mp = window.method_panel
    mp.set_method("auto")
    mp.preset.setCurrentText("fast")
    mp.steps.setValue(0)
    mp.device.setCurrentText("cpu")
    assert mp.estimate().train_s == pytest.approx(83.4 + 258.6)  # the next auto run: what this one took


def test_a_real_run_teaches_the_estimate_its_own_training_time(window, stack_tif, qtbot):
    """After a real run (IsoNet, with the GUI's axial check), the estimate for the same settings is
    that run's measured training time, not twice it."""
    from gui_helpers import set_tiny_run

    window.open_path(stack_tif)
    set_tiny_run(window, steps=4)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.start_run()
    result = blocker.args[0]
    axial = result.info.get("axial")
    assert isinstance(axial, dict) and "skipped" not in axial, axial  # the check trained a second time
    qtbot.waitUntil(lambda: "s_per_loop" in window._load_timings().get("isonet-fast-cpu", {}), timeout=5000)
    est = window.method_panel.estimate()
    assert est.measured and est.train_s == pytest.approx(result.train_seconds, rel=1e-6)


def test_a_method_that_does_not_train_still_fills_the_previews_at_the_end(window, stack_tif, qtbot):
    """Linear interpolation has no live preview; the panel showed four black boxes. It shows the
    input planes, and the result at the end."""
    from gui_helpers import set_tiny_run

    window.open_path(stack_tif)
    set_tiny_run(window, steps=1, method="linear")
    with qtbot.waitSignal(window.run_finished, timeout=120_000):
        window.start_run()
    qtbot.waitUntil(lambda: not window.runner.is_running(), timeout=10_000)
    panel = window.progress
    for key in ("in_xz", "xz", "in_yz", "yz"):
        img = panel.images[key].image
        assert img is not None and float(np.ptp(img)) > 0, key
    assert "Linear" in panel.titles["xz"].text and "does not train" not in panel.preview_label.text()


def test_previews_are_drawn_small_at_their_physical_size(window, stack_tif, qtbot, monkeypatch):
    """A 4 GiB stack's XZ plane at F 4 is 2045 x 2048: drawn at full size, each preview took 100-180 ms of
    the GUI thread. The planes are shrunk before they reach it (here to 32 px, so that a small stack
    shows it) and still cover the stack's physical extent."""
    from gui_helpers import set_tiny_run

    from isoapp.gui import view_tools

    monkeypatch.setattr(view_tools, "PREVIEW_MAX_PX", 32)
    window.open_path(stack_tif)
    set_tiny_run(window, steps=1, method="linear")
    with qtbot.waitSignal(window.run_finished, timeout=120_000):
        window.start_run()
    qtbot.waitUntil(lambda: not window.runner.is_running(), timeout=10_000)
    from isoapp.physics.forward import upsample

    nz, ny, nx = window.input.spatial_shape
    dz_out, dy, dx = window.progress.voxel_out
    height = upsample(np.zeros((nz, 1), np.float32), window.input.voxel_size[0] / dz_out, axis=0).shape[0] * dz_out
    for key in ("in_xz", "xz", "in_yz", "yz"):
        item = window.progress.images[key]
        assert max(item.image.shape) <= 32, (key, item.image.shape)
        rect = item.mapRectToParent(item.boundingRect())
        lateral = nx * dx if key.endswith("xz") else ny * dy
        assert abs(rect.width() - lateral) <= 0.1 * lateral and abs(rect.height() - height) <= 0.1 * height, (
            key, rect, lateral, height)
