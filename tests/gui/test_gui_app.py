"""GUI: opening stacks, the linked orthoviews, errors as dialogs, settings, CLI entry, Fiji menu."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_open_file_shows_info_and_calibrated_orthoviews(window, stack_tif):
    assert window.open_path(stack_tif) is True
    vol = window.input
    assert vol.spatial_shape == (9, 48, 48)
    info = window.info.text()
    assert "9 x 48 x 48" in info and "0.8 x 0.2 x 0.2 µm" in info and "uint16" in info and "MiB" in info
    assert "4 (dz/dxy)" in info
    ov = window.ortho
    assert ov.cursor == (4, 24, 24)
    # physical aspect: images are placed in µm
    assert ov.xy.image.mapRectToParent(ov.xy.image.boundingRect()).height() == pytest.approx(48 * 0.2)
    assert ov.xz.image.mapRectToParent(ov.xz.image.boundingRect()).height() == pytest.approx(9 * 0.8)
    assert ov.yz.image.mapRectToParent(ov.yz.image.boundingRect()).width() == pytest.approx(9 * 0.8)
    assert window.method_panel.factor.value() == pytest.approx(4.0)
    assert window.method_panel.estimate_label.text().startswith("Estimate")
    assert str(Path(stack_tif).resolve()) in window.settings.recent_files
    np.testing.assert_array_equal(ov.planes()["xz"], np.asarray(vol.data)[:, 24, :])


def test_cursor_click_slider_and_no_feedback_loop(window, stack_tif, qtbot):
    window.open_path(stack_tif)
    ov = window.ortho
    seen = []
    ov.cursorChanged.connect(lambda *c: seen.append(c))
    ov.xz.box.sigCursor.emit(10 * 0.2 + 0.05, 6 * 0.8 + 0.1)  # a click in XZ: x, z in µm
    assert ov.cursor == (6, 24, 10) and seen == [(6, 24, 10)]
    assert ov.sliders["z"].value() == 6 and ov.spins["x"].value() == 10
    ov.yz.box.sigCursor.emit(2 * 0.8 + 0.1, 30 * 0.2 + 0.05)  # YZ: z, y
    assert ov.cursor == (2, 30, 10)
    ov.sliders["y"].setValue(5)
    assert ov.cursor == (2, 5, 10) and ov.spins["y"].value() == 5
    assert len(seen) == 3
    ov.set_cursor(2, 5, 10)  # no change, no signal
    ov.set_cursor(99, -3, 1000)  # clamped
    assert ov.cursor == (8, 0, 47) and len(seen) == 4
    np.testing.assert_array_equal(ov.planes()["yz"], np.asarray(window.input.data)[:, :, 47].T)
    # contrast / LUT controls
    ov.set_lut("fire")
    ov.set_levels(10, 20)
    assert ov.xy.image.levels is not None and tuple(ov.xy.image.levels) == (10, 20)
    ov.auto_contrast()
    assert ov.levels()[1] > ov.levels()[0]


def test_multichannel_channel_selector(window, tmp_path):
    import tifffile

    data = np.stack([np.full((5, 16, 16), 10, np.uint16), np.full((5, 16, 16), 200, np.uint16)], axis=1)
    p = tmp_path / "two.tif"
    tifffile.imwrite(p, data, imagej=True, metadata={"axes": "ZCYX", "spacing": 1.0, "unit": "micron"},
                     resolution=(4, 4))
    assert window.open_path(p)
    ov = window.ortho
    assert ov.channel.count() == 3 and ov.channel.isVisibleTo(ov)  # C0, C1, Composite
    assert float(ov.data.mean()) == 10
    ov.channel.setCurrentIndex(1)
    assert float(ov.data.mean()) == 200
    # the composite: each channel through its own colour (green, magenta), added
    ov.set_composite(True)
    rgb = ov.xy.image.image
    assert ov.composite is not None and rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    ov.set_composite(False)
    assert ov.composite is None and ov.xy.image.image.ndim == 2


def test_hdf5_dataset_chooser(window, tmp_path, dialog_calls):
    import h5py

    calls, answers = dialog_calls
    p = tmp_path / "two.h5"
    with h5py.File(p, "w") as f:
        f["raw"] = np.zeros((6, 16, 16), np.float32)
        d = f.create_dataset("deep/signal", data=np.ones((7, 20, 24), np.float32))
        d.attrs["element_size_um"] = (1.0, 0.25, 0.25)
        f["meta"] = np.arange(3)
    answers["choose"] = lambda parent, title, label, items: next(i for i in items if "signal" in i)
    assert window.open_path(p)
    assert [c for c in calls if c[0] == "choose"], "the dataset chooser was not shown"
    assert window.input.spatial_shape == (7, 20, 24)
    assert window.input.voxel_size == pytest.approx((1.0, 0.25, 0.25))
    assert window.settings.recent_files[0].endswith("::/deep/signal")
    # cancelling the chooser keeps the current stack
    answers["choose"] = None
    assert window.open_path(p) is False and window.input.spatial_shape == (7, 20, 24)


def test_corrupt_file_is_reported_and_app_stays_usable(window, tmp_path, stack_tif, dialog_calls):
    calls, _ = dialog_calls
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + os.urandom(300))
    assert window.open_path(bad) is False
    errors = [c for c in calls if c[0] == "error"]
    assert len(errors) == 1
    _parent, title, message, _details = errors[0][1]
    assert "broken.tif" in title and message and "Traceback" not in message
    assert window.input is None and not window.run_button.isEnabled()
    assert window.open_path(tmp_path / "missing.tif") is False
    assert window.open_path(tmp_path / "notes.txt") is False
    assert len([c for c in calls if c[0] == "error"]) == 3
    assert window.open_path(stack_tif) is True  # still usable
    assert window.run_button.isEnabled()


def test_drop_file_opens_it(window, stack_tif):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(stack_tif))])
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    window.dropEvent(ev)
    assert window.input is not None and window.input.name == "stack"


def test_open_dialog_uses_hook(window, stack_tif, dialog_calls):
    calls, answers = dialog_calls
    answers["open_file"] = str(stack_tif)
    window.open_dialog()
    assert window.input is not None
    assert calls[0][0] == "open_file" and "*.tif" in calls[0][1][3]


def test_save_without_result_and_run_without_stack_are_dialogs(window, dialog_calls):
    calls, _ = dialog_calls
    window._guard(window.save_result)
    window._guard(window.start_run)
    msgs = [c[1][2] for c in calls if c[0] == "error"]
    assert len(msgs) == 2 and "no restored result" in msgs[0] and "open a stack" in msgs[1]


def test_settings_persist_between_windows(qtbot, tmp_path, settings_path, stack_tif, dialog_calls):
    from isoapp.gui import create_main_window
    from isoapp.gui.settings import AppSettings

    w1 = create_main_window(AppSettings.at_path(settings_path))
    qtbot.addWidget(w1)
    w1.open_path(stack_tif)
    w1.method_panel.steps.setValue(123)
    w1.method_panel.preset.setCurrentText("balanced")
    w1.settings.fiji_dir = "/opt/Fiji.app"
    w1.close()
    w2 = create_main_window(AppSettings.at_path(settings_path))
    qtbot.addWidget(w2)
    assert w2.method_panel.steps.value() == 123
    assert w2.method_panel.preset.currentText() == "balanced"
    assert w2.settings.fiji_dir == "/opt/Fiji.app"
    assert w2.settings.recent_files == [str(stack_tif.resolve())]
    w2._fill_recent()
    assert any(str(stack_tif.resolve()) in a.text() for a in w2.recent_menu.actions())
    w2.close()


def test_method_panel_options(window, stack_tif):
    from isoapp.methods import available_methods

    window.open_path(stack_tif)
    mp = window.method_panel
    assert {"isonet", "linear"} <= set(available_methods())
    assert mp.method_id() == "auto"  # the default
    mp.set_method("isonet")
    mp.psf_kind.setCurrentIndex(1)
    mp.factor_auto.setChecked(False)
    mp.factor.setValue(3.5)
    mp.params.setText('{"n_filters": 8}')
    opts = mp.options()
    assert opts["method"] == "isonet" and opts["factor"] == 3.5 and opts["params"] == {"n_filters": 8}
    assert opts["psf"] == {"kind": "gaussian", "fwhm_um": pytest.approx([1.6, 0.4, 0.4])}
    mp.params.setText("{not json")
    mp._changed()
    assert "JSON" in mp.estimate_label.text()
    mp.set_method("linear")
    assert not mp.steps.isEnabled() and "psf" not in (mp.params.setText("") or mp.options())


def test_fiji_menu_without_result_and_doctor(window, dialog_calls):
    calls, _ = dialog_calls
    window.fiji.actions["push"].trigger()
    errors = [c for c in calls if c[0] == "error"]
    assert errors and "no restored result" in errors[0][1][2]
    window.fiji.actions["doctor"].trigger()
    infos = [c for c in calls if c[0] == "info"]
    assert infos and ("Java" in infos[0][1][3] or "bridge" in infos[0][1][3])


def test_cli_registers_gui_command():
    from isoapp.cli import build_parser
    from isoapp.cli.cmd_gui import run

    args = build_parser().parse_args(["gui", "stack.tif"])
    assert args.func is run and args.file == "stack.tif"
    import isoapp.gui

    assert callable(isoapp.gui.create_main_window) and callable(isoapp.gui.main)


def test_send_without_display_is_a_clear_error(window, stack_tif, dialog_calls, monkeypatch):
    """Sending to Fiji needs a display for ImageJ's windows (the real hand-off: tests/gui/test_gui_fiji.py)."""
    calls, _ = dialog_calls
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    window.open_path(stack_tif)
    window.fiji.actions["push_input"].trigger()
    errors = [c for c in calls if c[0] == "error"]
    assert errors and "display" in errors[0][1][2] and window.fiji.handoff is None


def test_method_panel_shows_how_a_preset_departs_from_its_paper_and_the_psf_defaults_to_estimated(window):
    panel = window.method_panel
    panel.set_method("otcyclegan")
    panel.preset.setCurrentText("fast")
    assert panel.preset_note.text().startswith("Preset: not Park et al.'s recipe")
    panel.set_method("linear")
    assert panel.preset_note.text() == ""
    assert panel.psf_kind.currentData() == "auto" and "Estimate" in panel.psf_kind.currentText()
    assert panel.psf_spec() == {"kind": "auto"}
    assert "estimated from the stack" in panel.psf_stack.currentWidget().text()
    panel.psf_kind.setCurrentIndex(panel.psf_kind.findData("nyquist"))
    assert panel.psf_spec() == {"kind": "nyquist"}
    assert panel.psf_stack.count() == panel.psf_kind.count()
    assert "2 z steps" in panel.psf_stack.currentWidget().text()
    panel.psf_kind.setCurrentIndex(panel.psf_kind.findData("optical"))
    panel.optics_kind.setCurrentText("widefield")
    assert panel.pinhole.isHidden() and panel.sheet_na.isHidden() and panel.excitation.isHidden()
    panel.optics_kind.setCurrentText("confocal")
    assert not panel.pinhole.isHidden() and panel.sheet_na.isHidden() and not panel.excitation.isHidden()
    panel.excitation.setValue(0.488)
    panel.pinhole.setValue(0.7)
    assert panel.psf_spec() == {"kind": "optical", "optics": {
        "kind": "confocal", "na": 1.0, "wavelength_um": 0.52, "refractive_index": 1.33,
        "excitation_wavelength_um": 0.488, "pinhole_au": pytest.approx(0.7)}}
