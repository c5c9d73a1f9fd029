"""Stacks in their files are read off the GUI thread (issue 30): the planes a moved cursor shows, and the
input's preview planes at the start of a run.

A 2048^3 OME-Zarr result took 3 s to show a moved cursor's planes and a 4 GiB TIFF 0.25 s to give
the run's input previews, each a freeze of the window (benchmarks/gui_large.py). Here the stack is a
real array behind a gate that records which thread reads it and holds reads made off the GUI thread
until the test opens it: a plane read in the GUI thread is caught, and what the view shows while
the read waits is checked. Everything else is real (Qt, the views, the run, the files).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from gui_helpers import set_tiny_run, write_stack

from isoapp.core.volume import Volume
from isoapp.gui.orthoview import OrthoView


class GatedStack:
    """A lazy ZYX array: every read is recorded ``(in the GUI thread, key)``; reads from other threads
    wait for ``gate`` (at most 20 s, so a broken test fails rather than hangs)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads: list[tuple[bool, tuple]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __getitem__(self, key):
        main = threading.current_thread() is threading.main_thread()
        self.reads.append((main, key if isinstance(key, tuple) else (key,)))
        if not main:
            assert self.gate.wait(20), "the gate was never opened"
        return self.data[key]


def _plane_reads_in_gui_thread(stack: GatedStack) -> list[tuple]:
    """Reads of more than a voxel made in the GUI thread (a voxel for the status line is allowed)."""
    return [key for main, key in stack.reads if main and not all(isinstance(k, int | np.integer) for k in key)]


def _view_of(stack: GatedStack, qtbot, voxel=(1.0, 1.0, 1.0)) -> OrthoView:
    view = OrthoView()
    qtbot.addWidget(view)
    view.set_volume(Volume(stack, voxel_size=voxel))
    return view


def _wait_shown(view, qtbot) -> None:
    qtbot.waitUntil(lambda: not getattr(view, "planes_pending", lambda: False)(), timeout=10_000)


def test_a_moved_cursor_reads_a_file_backed_stack_in_the_background_and_shows_the_last_position(qtbot):
    ref = np.random.default_rng(0).random((20, 40, 50)).astype(np.float32)
    stack = GatedStack(ref)
    view = _view_of(stack, qtbot, (2.0, 0.5, 0.5))
    _wait_shown(view, qtbot)
    assert view.cursor == (10, 20, 25)
    np.testing.assert_array_equal(view.xz.image.image, ref[:, 20, :])  # (the display range's sample and
    # the projection read a few planes in the GUI thread when a stack is shown, each bounded in time)

    stack.gate.clear()
    stack.reads.clear()
    view.set_cursor(5, 7, 9)  # returns while the read waits behind the gate
    view.set_cursor(6, 8, 10)  # a second move while the first read waits: only the last position counts
    assert _plane_reads_in_gui_thread(stack) == [], "a moved cursor read its planes in the GUI thread"
    assert view.cursor == (6, 8, 10) and view.planes_pending()
    np.testing.assert_array_equal(view.xz.image.image, ref[:, 20, :])  # the old planes stay until read
    assert view.xz.hline.value() == pytest.approx(6.5 * 2.0), "the cursor lines move at once"

    stack.gate.set()
    _wait_shown(view, qtbot)
    np.testing.assert_array_equal(view.xy.image.image, ref[6])
    np.testing.assert_array_equal(view.xz.image.image, ref[:, 8, :])
    np.testing.assert_array_equal(view.yz.image.image, ref[:, :, 10].T)
    assert _plane_reads_in_gui_thread(stack) == []
    assert not any(key[:2] == (slice(None), 7) for _m, key in stack.reads[1:]), "the replaced request was read"
    # planes already read come back at once, without a read
    stack.reads.clear()
    view.set_cursor(6, 8, 11)
    view.set_cursor(6, 8, 10)
    _wait_shown(view, qtbot)
    np.testing.assert_array_equal(view.yz.image.image, ref[:, :, 10].T)
    assert [key for _m, key in stack.reads if key == (slice(None), slice(None), 10)] == []


def test_the_hover_readout_while_planes_are_read_reads_one_voxel(qtbot):
    """The mouse readout shows the voxel under the mouse (right of the wipe: the wiped-in stack)
    while the planes at a moved cursor are still being read, without reading them in the GUI thread."""
    a = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    b = -a
    stack = GatedStack(a)
    view = _view_of(stack, qtbot)
    view.set_wipe(b, 0.5)
    _wait_shown(view, qtbot)
    stack.gate.clear()
    stack.reads.clear()
    view.set_cursor(1, 2, 3)
    assert f"value {a[1, 4, 1]:.5g}" in view.hover("xy", 1.5, 4.5)
    assert f"value {b[1, 4, 6]:.5g}" in view.hover("xy", 6.5, 4.5)
    assert f"value {a[3, 2, 2]:.5g}" in view.hover("xz", 2.5, 3.5)
    assert f"value {a[0, 5, 3]:.5g}" in view.hover("yz", 0.5, 5.5)
    assert _plane_reads_in_gui_thread(stack) == []
    stack.gate.set()
    _wait_shown(view, qtbot)


def test_a_runs_input_previews_are_read_off_the_gui_thread(window, qtbot, tmp_path, dialog_calls):
    path = write_stack(tmp_path / "big.tif", shape=(36, 128, 128))
    window.settings.memory_limit_mb = 4  # the stack stays in its file, as a 20 GB one would
    assert window.open_path(str(path)) and window.input.is_lazy
    set_tiny_run(window, steps=0, method="linear")
    _calls, answers = dialog_calls
    answers["save_file"] = lambda *a: str(tmp_path / "out.zarr")
    threads = []
    read = window._preview_inputs

    def recording(*args):
        threads.append(threading.current_thread() is threading.main_thread())
        return read(*args)

    window._preview_inputs = recording
    with qtbot.waitSignal(window.run_finished, timeout=240_000):
        window.start_run()
    qtbot.waitUntil(lambda: not window.runner.is_running(), timeout=30_000)
    assert threads == [False], "the input's preview planes were read in the GUI thread"
    panel = window.progress
    qtbot.waitUntil(lambda: panel.preview_label.text().startswith("Result at"), timeout=10_000)
    y, x = window._preview_yx
    lo, hi = window._preview_norm
    from isoapp.physics.forward import upsample

    ref = np.asarray(window.input.data[:, y, :], np.float32)
    np.testing.assert_allclose(panel.images["in_xz"].image, (upsample(ref, 4.0, axis=0) - lo) / (hi - lo),
                               atol=1e-5)


def test_the_projection_of_a_file_backed_stack_is_made_in_the_background(qtbot):
    ref = np.random.default_rng(1).random((24, 30, 40)).astype(np.float32)
    stack = GatedStack(ref)
    stack.gate.clear()  # reads off the GUI thread wait: what the GUI thread did is done when set_volume returns
    view = _view_of(stack, qtbot)
    assert view._mip is None and view.planes_pending(), "the projection was made in the GUI thread"
    assert view.hover("mip", 3.5, 4.5) == "", "no readout of a projection not made yet"
    stack.gate.set()
    _wait_shown(view, qtbot)
    z = sorted(view.data.mip_z)
    np.testing.assert_array_equal(view.mip.image.image, ref[z].max(axis=0))
    assert view.mip.titles[0] == (f"MIP of {len(z)} of 24 z planes" if len(z) < 24 else "MIP along z")
    assert f"max {ref[z, 4, 3].max():.5g}" in view.hover("mip", 3.5, 4.5)


def test_a_cursor_move_does_not_render_unchanged_images_again(qtbot):
    """pyqtgraph renders an image again when it is given a new lookup table object, new levels or the
    image again: a cursor move re-rendered the projection and all planes (0.2 s for 2048^2 planes)."""
    ref = np.random.default_rng(2).random((12, 64, 64)).astype(np.float32)
    view = OrthoView()
    qtbot.addWidget(view)
    view.resize(600, 500)
    view.show()
    qtbot.waitExposed(view)
    view.set_volume(Volume(ref, voxel_size=(1.0, 1.0, 1.0)))
    view.grab()  # paints: each image is rendered into its QImage
    rendered = view.mip.image.qimage
    assert rendered is not None
    view.set_cursor(3, 10, 20)
    view.grab()
    assert view.mip.image.qimage is rendered, "the unchanged projection was rendered again"
    np.testing.assert_array_equal(view.xy.image.image, ref[3])


def test_moving_back_to_the_position_being_read_shows_it(qtbot):
    """A -> B -> A while A is still being read: A's read goes on (or is made again) and A is shown; the
    view never waits for planes that no one reads."""
    ref = np.random.default_rng(3).random((16, 24, 32)).astype(np.float32)
    stack = GatedStack(ref)
    view = _view_of(stack, qtbot)
    _wait_shown(view, qtbot)
    for release_after in (False, True):  # the gate opens after the moves, or between them
        stack.gate.clear()
        view.set_cursor(3, 4, 5)  # A: its read waits behind the gate
        view.set_cursor(9, 10, 11)  # B
        if release_after:
            stack.gate.set()
            qtbot.wait(20)  # A may give up for B here
        view.set_cursor(3, 4, 5)  # A again
        stack.gate.set()
        _wait_shown(view, qtbot)
        np.testing.assert_array_equal(view.xy.image.image, ref[3])
        np.testing.assert_array_equal(view.xz.image.image, ref[:, 4, :])
        np.testing.assert_array_equal(view.yz.image.image, ref[:, :, 5].T)
        view.set_cursor(8, 8, 8)
        _wait_shown(view, qtbot)


def test_xy_and_xz_show_while_the_yz_plane_is_still_being_read(qtbot):
    """The YZ plane of a ZYX file touches every page of it (a cold 4 GiB TIFF: ~9 s), while XY is one
    contiguous read. The planes were shown only when all three were read; XY and XZ now show as read."""
    ref = np.random.default_rng(1).random((20, 40, 50)).astype(np.float32)
    stack = GatedStack(ref)
    view = _view_of(stack, qtbot)
    _wait_shown(view, qtbot)
    yz_gate = threading.Event()
    plain = GatedStack.__getitem__

    def slow_yz(self, key):
        yz = isinstance(key, tuple) and len(key) == 3 and isinstance(key[2], int | np.integer)
        if yz and threading.current_thread() is not threading.main_thread():
            assert yz_gate.wait(20), "the YZ gate was never opened"
        return plain(self, key)

    stack.__class__ = type("SlowYZ", (GatedStack,), {"__getitem__": slow_yz})
    view.set_cursor(3, 11, 17)
    qtbot.waitUntil(lambda: np.array_equal(view.xz.image.image, ref[:, 11, :]), timeout=10_000)
    np.testing.assert_array_equal(view.xy.image.image, ref[3])
    assert view.planes_pending(), "YZ is still being read"
    assert not np.array_equal(view.yz.image.image, ref[:, :, 17].T)
    yz_gate.set()
    _wait_shown(view, qtbot)
    np.testing.assert_array_equal(view.yz.image.image, ref[:, :, 17].T)
    np.testing.assert_array_equal(view.xy.image.image, ref[3])


def test_a_result_shown_with_given_levels_reads_its_histogram_sample_in_the_background(qtbot):
    """The result beside its input gets the input's levels; its histogram's sample (up to 1 s of reads of
    an OME-Zarr result) was read in the GUI thread as a block-wise run ended, a 0.3-0.55 s freeze."""
    ref = np.random.default_rng(2).random((20, 40, 50)).astype(np.float32)
    stack = GatedStack(ref)
    stack.gate.clear()
    view = OrthoView()
    qtbot.addWidget(view)
    view.set_volume(Volume(stack, voxel_size=(1.0, 1.0, 1.0)), levels=(0.1, 0.9))
    assert _plane_reads_in_gui_thread(stack) == [], "the histogram's sample was read in the GUI thread"
    assert view.levels() == pytest.approx((0.1, 0.9))
    stack.gate.set()
    qtbot.waitUntil(lambda: view.contrast.curve.getData()[0] is not None and len(view.contrast.curve.getData()[0]) > 0,
                    timeout=10_000)
    _wait_shown(view, qtbot)
    assert _plane_reads_in_gui_thread(stack) == []
