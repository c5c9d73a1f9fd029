"""GUI viewer features (issue 15): hover readout, slice keys and wheel, scale bar, contrast, MIP,
tooltips, method names and the quality report."""

from __future__ import annotations

import numpy as np
import pytest


def test_hover_readout_keys_wheel_and_zoom(window, stack_tif, qtbot):
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtWidgets import QGraphicsSceneWheelEvent

    window.open_path(stack_tif)
    ov = window.ortho
    data = np.asarray(window.input.data)
    text = ov.hover("xy", 10 * 0.2 + 0.05, 30 * 0.2 + 0.05)  # x=10, y=30 px
    assert "y=30 x=10 px" in text and "(3.60, 6.10, 2.10 µm)" in text
    assert f"value {float(data[4, 30, 10]):.5g}" in text and "mouse" in ov.status.text()
    # the status keeps two lines, values before positions (a narrow Compare panel clips line ends), and
    # its height does not change with the mouse, so hovering never re-lays out the views
    first, second = ov.status.text().split("\n")
    z, y, x = ov.cursor
    assert first.startswith(f"cursor z={z} y={y} x={x} = {float(data[z, y, x]):.4g}") and second.startswith("mouse")
    height = ov.status.height()
    ov.hover("xy", -5.0, -5.0)  # off the image: no mouse readout
    assert ov.status.text().count("\n") == 1 and "mouse" not in ov.status.text() and ov.status.height() == height
    assert f"max {float(data[:, 30, 10].max()):.5g}" in ov.hover("mip", 2.05, 6.05)
    # keys: arrows, < > and PageUp/PageDown step the plane of the last view used (XY -> z)
    z0 = ov.cursor[0]
    for key, dz in ((Qt.Key.Key_Right, 1), (Qt.Key.Key_Period, 1), (Qt.Key.Key_Left, -1),
                    (Qt.Key.Key_Comma, -1), (Qt.Key.Key_PageUp, 10), (Qt.Key.Key_PageDown, -10)):
        before = ov.cursor[0]
        qtbot.keyClick(ov.graphics, key)
        assert ov.cursor[0] == int(np.clip(before + dz, 0, 8)), key
    assert z0 == 4 and ov.cursor[0] == 0
    # the wheel steps slices of the plane under it; Ctrl+wheel zooms (Fiji's convention)
    def wheel(box, delta, mods=Qt.KeyboardModifier.NoModifier):
        ev = QGraphicsSceneWheelEvent()
        ev.setDelta(delta)
        ev.setModifiers(mods)
        ev.setScenePos(box.sceneBoundingRect().center())
        ev.setPos(QPointF(box.width() / 2, box.height() / 2))
        box.wheelEvent(ev)

    ov.set_cursor(4, 24, 24)
    wheel(ov.xy.box, -120)  # wheel down: the next slice, as in Fiji
    assert ov.cursor == (5, 24, 24)
    wheel(ov.xz.box, 120)
    assert ov.cursor == (5, 23, 24)  # XZ steps y
    span = np.diff(ov.xy.box.viewRange()[0])[0]
    wheel(ov.xy.box, 120, Qt.KeyboardModifier.ControlModifier)
    assert np.diff(ov.xy.box.viewRange()[0])[0] < span and ov.cursor == (5, 23, 24)
    qtbot.keyClick(ov.graphics, Qt.Key.Key_Home)  # reset view
    assert np.diff(ov.xy.box.viewRange()[0])[0] == pytest.approx(span, rel=0.05)


def test_scale_bar_contrast_histogram_gamma_and_mip(window, stack_tif):
    window.open_path(stack_tif)
    ov = window.ortho
    bar = ov.scale_bar
    (x0, x1), _ = ov.xy.box.viewRange()
    assert bar.text.toPlainText().endswith("µm") and 0 < bar.size <= (x1 - x0) / 2
    mantissa = bar.size / 10 ** np.floor(np.log10(bar.size))
    assert round(float(mantissa), 6) in (1.0, 2.0, 5.0)
    # contrast: the histogram's region and the spin boxes are one state
    ov.contrast.region.setRegion((100, 900))
    assert ov.levels() == pytest.approx((100, 900)) and tuple(ov.xy.image.levels) == pytest.approx((100, 900))
    ov.set_levels(5, 50)
    assert ov.contrast.region.getRegion() == pytest.approx((5, 50))
    assert len(ov.contrast.curve.getData()[0]) > 10
    lut1 = ov.xy.image.lut.copy()
    ov.set_gamma(0.5)
    assert (ov.xy.image.lut[128] > lut1[128]).all(), "gamma < 1 brightens the mid-tones"
    # the fourth quadrant: the maximum projection along z
    np.testing.assert_array_equal(ov.mip.image.image, np.asarray(window.input.data).max(axis=0))


def test_every_control_has_a_tooltip_and_methods_have_names(window, stack_tif):
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractSlider,
        QAbstractSpinBox,
        QComboBox,
        QLineEdit,
        QWidget,
    )

    from isoapp.methods import available_methods, get_method

    window.open_path(stack_tif)
    kinds = (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QAbstractSlider)
    missing = []
    for w in window.findChildren(QWidget):
        if isinstance(w, kinds) and w.isVisibleTo(window) and not w.toolTip() and type(w).__name__ not in ("QScrollBar", "QTabBar"):
            if isinstance(w.parent(), (QAbstractSpinBox, QComboBox)) or type(w.parent()).__name__ in (
                    "QScrollBar", "QDockWidget", "QTabBar"):
                continue  # the editor inside a spin box or combo, dock buttons
            missing.append(f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r}")
    assert not missing, missing
    mp = window.method_panel
    labels = [mp.method.itemText(i) for i in range(mp.method.count())]
    assert all(get_method(n).label in labels for n in available_methods())
    assert "isonet" not in labels and any("IsoNet" in t for t in labels)
    mp.set_method("linear")
    assert window.run_button.text() == "Restore" and window.run_action.text() == "Restore"
    mp.set_method("isonet")
    assert window.run_button.text().replace("&&", "&") == "Train & Restore"
    mp.set_method("selfvision")  # its option comes from the method class
    assert set(mp.option_widgets) == {"axes"}
    mp.option_widgets["axes"].setCurrentIndex(1)
    assert mp.options()["params"]["axes"] == "zyx"


def test_quality_report_and_banner(window):
    from isoapp.gui.report_panel import beats_interpolation, report_html
    from isoapp.physics.degradation import Degradation

    deg = Degradation(factor=4.0, axial_sigma_px=1.7, lateral_um=0.8, noise_gain=0.02, noise_offset=0.0)
    info = {"degradation": deg.summary(),  # the keys restore() reports
            "heldout": {"psnr_gain_db": 1.25, "ssim_gain": 0.031, "psnr_method": 31.2, "psnr_interp": 29.95,
                        "n_planes": 6}}
    html = report_html(info, "IsoNet")
    assert "3.2 µm" in html and "estimated from the stack" in html and "+1.25 dB" in html and "6 lateral" in html
    assert "std 0.1 at half range" in html  # sqrt(0.02 * 0.5)
    rep = window.report
    rep.show_info(info, "IsoNet")
    assert not rep.isHidden() and rep.banner.isHidden()
    bad = dict(info, heldout=dict(info["heldout"], psnr_gain_db=-0.4))
    assert beats_interpolation(bad) is False and beats_interpolation({}) is None
    rep.show_info(bad, "Self-Net")
    assert not rep.banner.isHidden() and "does not beat" in rep.banner.text() and "-0.40 dB" in rep.banner.text()
    rep.show_info({}, "linear")  # older results without the dicts: nothing shown
    assert rep.isHidden()
