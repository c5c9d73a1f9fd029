"""GUI: what the screenshots showed wrong (issue 15): overlapping loss-axis numbers in squeezed plots,
progress text wider than its bar, a view title running over the fourth quadrant, and an ``auto``
result that did not say which method it chose."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import set_tiny_run


def _tick_label_rects(axis):
    """The rectangles pyqtgraph would draw the axis's tick labels in, with their texts."""
    from PySide6.QtGui import QImage, QPainter

    img = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(img)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [] if specs is None else [(rect, text) for rect, _flags, text in specs[2]]


def _feed_three_stage_groups(panel) -> None:
    """IsoNet then Self-Net's two stages (losses ~0.05, ~5, ~0.005), as an auto run sends them."""
    from isoapp.training.events import ProgressEvent

    rng = np.random.default_rng(0)
    for stage, n, scale in (("isonet", 300, 0.05), ("selfnet_stage1", 600, 10.0), ("selfnet_stage2", 600, 0.01)):
        for s in range(1, n + 1, 10):
            panel.on_progress(ProgressEvent(stage, s, n, loss=scale * (1 + rng.random()) * np.exp(-s / 300),
                                            val_loss=scale * 1.2 if s % 100 == 1 else None))


def test_loss_plots_keep_their_height_and_tick_labels_do_not_overlap(qtbot):
    from isoapp.gui.progress_panel import ProgressPanel

    panel = ProgressPanel()
    qtbot.addWidget(panel)
    panel.resize(280, 820)  # a side dock on a laptop screen
    panel.show()
    panel.start((0.1, 0.1, 0.1), "here")
    _feed_three_stage_groups(panel)
    qtbot.wait(50)
    assert len(panel.plots) == 3
    for group, plot in panel.plots.items():
        # was squeezed to a 10 px tall plot area, with its numbers drawn over each other
        assert plot.vb.height() >= 40, (group, plot.vb.height())
        for side in ("left", "bottom"):
            labels = _tick_label_rects(plot.getAxis(side))
            assert labels, (group, side)  # still numbered
            for i, (a, ta) in enumerate(labels):
                for b, tb in labels[i + 1:]:
                    assert not a.intersects(b), f"{group} {side} axis: {ta!r} overlaps {tb!r}"
    # a decade of loss still gets more than one number, in plain notation
    stage1 = [t for _r, t in _tick_label_rects(panel.plots["selfnet_stage1"].getAxis("left"))]
    assert len(stage1) >= 2 and "10" in stage1, stage1
    panel.start((0.1, 0.1, 0.1), "here")  # a new run: no room kept for the old plots
    assert panel.plots == {} and panel.loss_view.minimumHeight() == 0


def test_progress_text_fits_its_bar(window):
    from isoapp.training.events import ProgressEvent

    window.resize(1366 - 16, 768 - 64)  # the dock at its narrowest
    panel = window.progress
    panel.start((0.1, 0.1, 0.1), "here")
    bar = panel.bar
    for text_of in (lambda: panel.on_progress(ProgressEvent("selfnet_e12_stage2", 1234, 6000, loss=0.01)),
                    lambda: panel.finish("Cancelled", "cancelled")):
        text_of()
        room = bar.contentsRect().width() - 8
        shown = bar.text()  # what the style paints
        assert bar.fontMetrics().horizontalAdvance(shown) <= room, (shown, room)
    assert "Resume continues" in bar.toolTip()  # the whole text is still there to read
    panel.finish("Done", "done")
    assert bar.text() == "done"


def test_voxel_sizes_fit_their_boxes_on_a_laptop_screen(window, qtbot):
    """At 1366 x 768 the method dock is narrow; the voxel boxes (four decimals) have no arrow buttons,
    so the whole number shows (it was cut to '0.100(' with them)."""
    window.resize(1366 - 16, 768 - 64)
    window.show()
    qtbot.waitExposed(window)
    for sb in window.method_panel.voxel:
        sb.setValue(0.1234)
        edit = sb.lineEdit()
        assert edit.fontMetrics().horizontalAdvance(edit.text()) <= edit.contentsRect().width(), edit.text()


def test_view_titles_fit_their_quadrants(qtbot):
    from isoapp.core.volume import Volume
    from isoapp.gui.orthoview import OrthoView

    view = OrthoView(title="After (restored)")
    qtbot.addWidget(view)
    view.resize(350, 480)  # one side of Compare's side-by-side: the MIP quadrant is ~60 px wide
    view.show()
    data = np.random.default_rng(0).random((33, 128, 128)).astype(np.float32)
    view.set_volume(Volume(data, axes="ZYX", voxel_size=(0.1, 0.1, 0.1)))
    qtbot.wait(50)
    for plane in view.plane_items():
        box = plane.box.sceneBoundingRect()
        if plane.label.isVisible():
            label = plane.label.sceneBoundingRect()
            assert box.contains(label), (plane.key, plane.label.textItem.toPlainText(), label, box)
    assert view.mip.label.isVisible() and view.mip.label.textItem.toPlainText() == "MIP"  # short, not gone
    view.resize(1400, 900)
    qtbot.wait(50)
    assert view.xy.label.textItem.toPlainText() == "XY"


@pytest.mark.slow
def test_auto_result_names_the_method_it_chose(window, stack_tif, qtbot):
    window.open_path(stack_tif)
    set_tiny_run(window, steps=3, method="auto")
    with qtbot.waitSignal(window.run_finished, timeout=300_000) as blocker:
        window.start_run()
    qtbot.waitUntil(lambda: not window.runner.is_running() and not window.cancel_button.isEnabled(),
                    timeout=30_000)
    info = blocker.args[0].info
    chosen = {"isonet": "IsoNet", "selfnet": "Self-Net", "cubic": "Cubic-spline interpolation"}[info["chosen"]]
    box = window.compare.result_box
    assert box.currentText() == f"Auto: {chosen}"  # was "Auto (best on held-out planes)"
    text = window.report.text.text()
    assert f"Auto chose {chosen}" in text and "held-out" in text, text
    tried = [t for t in info["candidates"] if "heldout_gain_db" in t]
    for trial in tried:  # every candidate's held-out gain, in the report's rounding
        assert f"{trial['heldout_gain_db']:+.2f} dB" in text, (trial, text)
    assert chosen in window.progress.stage_label.text()


def test_no_banner_for_interpolation_itself(window):
    """Linear interpolation (or auto falling back to cubic) "not beating interpolation" is no warning."""
    from isoapp.gui.report_panel import beats_interpolation

    held = {"psnr_gain_db": 0.0, "ssim_gain": 0.0, "psnr_method": 23.79, "psnr_interp": 23.79, "n_planes": 2}
    for info in ({"method": "linear", "heldout": held},
                 {"method": "auto", "chosen": "cubic", "heldout": dict(held, psnr_gain_db=-0.1)}):
        assert beats_interpolation(info) is None
        window.report.show_info(info, "x")
        assert window.report.banner.isHidden() and not window.report.isHidden()
    assert beats_interpolation({"method": "isonet", "heldout": held}) is False


def test_compare_loads_the_before_view_once_and_stats_look_at_a_bounded_sample(qtbot):
    """A GUI-thread stall at the end of every run: the before view was reloaded (levels and histogram
    of the whole stack) for each result, next to the after view, in one event-loop turn."""
    from isoapp.core.volume import Volume
    from isoapp.gui.compare import ComparePanel
    from isoapp.gui.view_tools import STATS_SAMPLE, auto_levels, stats_sample

    rng = np.random.default_rng(1)
    stack = Volume(rng.random((9, 40, 40)).astype(np.float32), axes="ZYX", voxel_size=(0.8, 0.2, 0.2))
    panel = ComparePanel()
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    panel.set_input(stack)
    loads = {"left": 0, "right": 0}
    panel.left.volumeChanged.connect(lambda: loads.__setitem__("left", loads["left"] + 1))
    panel.right.volumeChanged.connect(lambda: loads.__setitem__("right", loads["right"] + 1))
    for i, name in enumerate(("linear", "isonet")):
        out = stack.with_data(rng.random((33, 40, 40)).astype(np.float32), voxel_size=(0.2, 0.2, 0.2), name=name)
        panel.add_result(name, out, 4.0)
        assert loads["left"] == i  # deferred: nothing loaded in the turn that adds the result
        qtbot.waitUntil(lambda i=i: loads["right"] == i + 1, timeout=5000)
    assert loads["left"] == 1 and panel.right.volume.name == "isonet"
    big = rng.random((60, 200, 200)).astype(np.float32)
    assert stats_sample(big).size <= STATS_SAMPLE
    lo, hi = auto_levels(big)
    assert abs(lo - np.percentile(big, 0.5)) < 0.01 and abs(hi - np.percentile(big, 99.8)) < 0.01


def test_one_validation_point_per_validation(qtbot):
    """The trainer repeats the last validation loss on every step; the plot drew a row of dots."""
    from isoapp.gui.progress_panel import ProgressPanel
    from isoapp.training.events import ProgressEvent

    panel = ProgressPanel()
    qtbot.addWidget(panel)
    panel.start((0.1, 0.1, 0.1), "here")
    val = None
    for step in range(1, 301):
        if step % 100 == 0:
            val = 0.02 - step * 1e-5
        panel.on_progress(ProgressEvent("isonet", step, 300, loss=0.03, val_loss=val))
    assert panel.series["isonet"]["vx"] == [100, 200, 300]
    assert panel.val_steps == [100, 200, 300]
