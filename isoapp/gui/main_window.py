"""The main window: open, inspect, train and restore in the background, compare, save, send to Fiji."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import IsoappError
from ..core.volume import Volume
from ..data.io import write_volume
from . import dialogs, gcguard, opening, runs
from .compare import ComparePanel
from .fiji_actions import FijiActions
from .log_panel import LogPanel, install_handler, remove_handler
from .method_panel import MethodPanel
from .orthoview import OrthoView
from .progress_panel import ProgressPanel
from .report_panel import QualityReport
from .run_actions import RunMixin
from .settings import AppSettings
from .settings_dialog import SettingsDialog
from .worker import RunController

log = logging.getLogger(__name__)

DEFAULT_SIZE = (1400, 900)
NARROW_WINDOW = (1500, 900)  # px: below them the docks give their width (height) to the images


class MainWindow(RunMixin, QMainWindow):
    """isoapp's main window. Scriptable: :meth:`open_path`, :meth:`start_run`, :meth:`save_result`."""

    volume_opened = Signal(object)
    run_started = Signal(object)  # the RestoreWorker
    run_finished = Signal(object)  # RestoreResult
    run_failed = Signal(str)
    run_cancelled = Signal(str)
    result_saved = Signal(str)
    preview_planes_read = Signal(str, object, object)  # (inputs or result label, run, planes) read off the GUI thread

    def __init__(self, settings: AppSettings | None = None) -> None:
        super().__init__()
        gcguard.acquire()  # collect garbage in this (the GUI) thread only while the window lives
        self._gc_held = True
        self.settings = settings or AppSettings()
        self.input: Volume | None = None
        self.last_run: dict[str, Any] | None = None  # options + work_dir of a cancelled run
        self.results_info: dict[str, dict] = {}  # result label -> RestoreResult.info
        self._running = False
        self.runner = RunController(self)
        self.runner.thread_finished.connect(self._thread_finished)
        self.setWindowTitle("isoapp — isotropic restoration")
        self.setAcceptDrops(True)

        self.log_panel = LogPanel(self)
        install_handler(self.log_panel.handler)
        self.ortho = OrthoView(self, title="Input")
        self.compare = ComparePanel(self)
        self.report = QualityReport(self)
        cw = QWidget(self)
        cl = QVBoxLayout(cw)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.report)
        cl.addWidget(self.compare, 1)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.ortho, "Input")
        self.compare_tab = cw
        self.tabs.addTab(cw, "Compare")
        self.tabs.setTabToolTip(0, "the opened stack in linked orthogonal views")
        self.tabs.setTabToolTip(1, "before (interpolated) and after, side by side, wipe, toggle or uncertainty")
        self.setCentralWidget(self.tabs)
        self.progress = ProgressPanel(self)
        self.preview_planes_read.connect(self._preview_planes_read)  # previews of a stack in its file (a thread)
        self.method_panel = MethodPanel(self)
        self.method_panel.timings = self._load_timings()
        self.method_panel.restore_state(self.settings.method_state)
        self.method_panel.voxelChanged.connect(self._set_voxel_size)
        self.fiji = FijiActions(self, self.settings, self._fiji_context)
        self.fiji.sent.connect(lambda msg: self.statusBar().showMessage(msg, 8000))
        self._build_side_dock()
        self._build_bottom_docks()
        self._build_menus()
        self.method_panel.changed.connect(self._update_run_button)
        geometry = self.settings.qs.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(*DEFAULT_SIZE)
        self.fit_to_screen()
        self._set_running(False)
        self.statusBar().showMessage("Open a stack (File > Open, or drop a file on the window)")

    # ------------------------------------------------------------------ layout
    def _build_side_dock(self) -> None:
        self.info = QLabel("No stack open.", self)
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.info.setToolTip("what the file says about the stack")
        self.run_button = QPushButton("Train && Restore", self)
        self.run_button.clicked.connect(lambda: self._guard(self.start_run))
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("stop after the current step; the checkpoint is kept for Resume (Esc)")
        self.cancel_button.clicked.connect(self.cancel_run)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.setToolTip("continue the cancelled run from its checkpoint")
        self.resume_button.clicked.connect(lambda: self.start_run(resume=True))
        buttons = QHBoxLayout()
        for b in (self.run_button, self.cancel_button, self.resume_button):
            buttons.addWidget(b)
        side = QWidget(self)
        lay = QVBoxLayout(side)
        lay.addWidget(self.info)
        lay.addWidget(self.method_panel)
        lay.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(self.method_panel.minimumSizeHint().width() + 24)  # + vertical scroll bar
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        panel = QWidget(self)  # the estimate and the run buttons stay visible below the scroll area
        pl = QVBoxLayout(panel)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(scroll, 1)
        pl.addWidget(self.method_panel.estimate_label)
        pl.addLayout(buttons)
        self.method_dock = dock = QDockWidget("Stack && method", self)
        dock.setObjectName("dock_method")
        dock.setWidget(panel)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)

    def _build_bottom_docks(self) -> None:
        self.progress_dock = QDockWidget("Progress && live preview", self)
        self.progress_dock.setObjectName("dock_progress")
        self.progress_dock.setWidget(self.progress)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("dock_log")
        self.log_dock.setWidget(self.log_panel)
        for d in (self.progress_dock, self.log_dock):
            # closable: View > toggles them (Qt disables the toggle action of a dock that cannot close)
            d.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                          | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                          | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.progress.setMinimumWidth(250)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.progress_dock)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.resizeDocks([self.progress_dock], [380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.log_dock], [150], Qt.Orientation.Vertical)

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(shortcut)
        act.triggered.connect(lambda _checked=False: self._guard(slot))
        menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open…", self.open_dialog, QKeySequence.StandardKey.Open)
        self._action(file_menu, "Open OME-&Zarr folder…", self.open_zarr_dialog)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self.resume_menu = file_menu.addMenu("Res&ume run")
        self.resume_menu.setToolTipsVisible(True)
        self.resume_menu.aboutToShow.connect(self._fill_resume)
        file_menu.addSeparator()
        self._action(file_menu, "Load &reference (ground truth)…", self.load_reference_dialog)
        self.save_action = self._action(file_menu, "&Save result as…", self.save_result,
                                        QKeySequence.StandardKey.Save)
        file_menu.addSeparator()
        self._action(file_menu, "&Settings…", self.open_settings)
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        run_menu = bar.addMenu("&Run")
        self.run_action = self._action(run_menu, "Train && &Restore", self.start_run, "Ctrl+R")
        self._action(run_menu, "&Cancel", self.cancel_run, "Esc")
        self._action(run_menu, "Res&ume", lambda: self.start_run(resume=True))
        bar.addMenu(self.fiji.menu)
        view = bar.addMenu("&View")
        self._action(view, "&Reset view (fit)", self.reset_views, "Ctrl+0")
        view.addSeparator()
        for d in (self.progress_dock, self.log_dock):
            view.addAction(d.toggleViewAction())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        new, old = event.size(), event.oldSize()
        # a laptop screen: the docks at their minimum, the images (Compare) get the room
        if new.width() != old.width() and new.width() < NARROW_WINDOW[0]:
            docks = [self.method_dock, self.progress_dock]
            self.resizeDocks(docks, [d.minimumSizeHint().width() for d in docks], Qt.Orientation.Horizontal)
        if new.height() != old.height() and new.height() < NARROW_WINDOW[1]:
            self.resizeDocks([self.log_dock], [self.log_dock.minimumSizeHint().height()], Qt.Orientation.Vertical)

    def reset_views(self) -> None:
        """Fit every visible view to its image (Ctrl+0)."""
        self.ortho.reset_view()
        self.compare.reset_views()

    def fit_to_screen(self) -> None:
        """Keep the whole window on the screen (1366x768 laptops included)."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        avail = screen.availableGeometry()
        frame_w = max(self.frameGeometry().width() - self.geometry().width(), 0)
        frame_h = max(self.frameGeometry().height() - self.geometry().height(), 0)
        w = min(self.width(), avail.width() - frame_w)
        h = min(self.height(), avail.height() - frame_h)
        if (w, h) != (self.width(), self.height()):
            self.resize(w, h)
        x = min(max(self.x(), avail.x()), avail.x() + avail.width() - w - frame_w)
        y = min(max(self.y(), avail.y()), avail.y() + avail.height() - h - frame_h)
        self.move(x, y)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for entry in self.settings.recent_files:
            act = self.recent_menu.addAction(entry.replace("::", "  dataset "))
            act.triggered.connect(lambda _c=False, e=entry: self.open_path(*opening.split_recent(e)))
        if not self.settings.recent_files:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self.settings.clear_recent)

    def _guard(self, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every error becomes a dialog
            dialogs.report_exception(self, "isoapp", exc)

    # ------------------------------------------------------------------ opening
    def open_dialog(self) -> None:
        path = dialogs.open_file(self, "Open stack", self.settings.last_dir, opening.FILE_FILTER)
        if path:
            self.open_path(path)

    def open_zarr_dialog(self) -> None:
        path = dialogs.open_dir(self, "Open OME-Zarr folder", self.settings.last_dir)
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path, dataset: str | None = None) -> bool:
        """Open a stack; errors become a dialog and leave the current stack as it was."""
        if self.runner.is_running():
            dialogs.show_error(self, "Open", "A run is in progress; cancel it before opening another stack.")
            return False
        try:
            volume, dataset = opening.load_volume(self, path, dataset, self.fiji.connect_session,
                                                  self.settings.memory_limit_bytes)
        except Exception as exc:  # noqa: BLE001
            dialogs.report_exception(self, f"Cannot open {Path(path).name}", exc)
            return False
        if volume is None:
            return False
        self.set_volume(volume)
        self.settings.add_recent(path, dataset)
        self.settings.last_dir = str(Path(path).resolve().parent)
        return True

    def set_volume(self, volume: Volume) -> None:
        """Show ``volume`` as the input (also for scripts that built it in memory)."""
        self.input = volume
        self.last_run = None
        self.results_info.clear()
        self.ortho.set_volume(volume)
        self.method_panel.set_volume(volume)
        self.compare.set_input(volume)
        self.progress.reset()
        self.report.clear()
        self.info.setText(opening.describe(volume))
        self.tabs.setCurrentWidget(self.ortho)
        self.setWindowTitle(f"isoapp — {volume.name}")
        self.statusBar().showMessage(volume.describe(), 10000)
        log.info("opened %s", volume.describe())
        self._set_running(False)
        self.volume_opened.emit(volume)

    def _set_voxel_size(self, voxel_size) -> None:
        """The user typed a voxel size: views and the run use it (the file is not changed)."""
        if self.input is None or tuple(voxel_size) == tuple(self.input.voxel_size):
            return
        vol = self.input.with_data(self.input.data, voxel_size=tuple(float(v) for v in voxel_size))
        vol.metadata["calibrated"] = True
        vol.metadata["voxel_size_from"] = "user"
        self.input = vol
        self.ortho.set_volume(vol, keep_cursor=True, levels=self.ortho.levels())
        self.compare.set_input(vol)
        self.info.setText(opening.describe(vol))

    def load_reference_dialog(self) -> None:
        path = dialogs.open_file(self, "Reference (isotropic ground truth)", self.settings.last_dir,
                                 opening.FILE_FILTER)
        if path:
            self.load_reference(path)

    def load_reference(self, path: str | Path) -> None:
        ref, _ = opening.load_volume(self, path, None, self.fiji.connect_session)
        if ref is not None:
            self.compare.set_reference(ref)
            self.tabs.setCurrentWidget(self.compare_tab)

    # ------------------------------------------------------------------ saving / Fiji
    def save_result(self, path: str | Path | None = None) -> Path | None:
        """Write the shown result atomically (TIFF, OME-TIFF, HDF5, OME-Zarr by extension)."""
        res = self.compare.current_result()
        if res is None:
            raise IsoappError("there is no restored result to save yet; run a method first (Run)")
        if path is None:
            start = str(Path(self.settings.last_dir) / f"{res.name}.tif")
            path = dialogs.save_file(self, "Save result", start, opening.SAVE_FILTER)
            if not path:
                return None
        path = Path(path)
        if not opening.is_writable(path):
            path = path.with_name(path.name + ".tif")
        inputs = [self.input.path] if self.input is not None and self.input.path else []
        out = write_volume(res, path, inputs=inputs)
        self.statusBar().showMessage(f"saved {out}", 10000)
        self.result_saved.emit(str(out))
        return out

    def _fiji_context(self) -> dict[str, Any]:
        return {"input": self.input, "result": self.compare.current_result(), "results": self.compare.results}

    def open_settings(self) -> None:
        SettingsDialog(self.settings, self).exec()

    # ------------------------------------------------------------------ drag & drop, closing
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt naming
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if any(u.isLocalFile() for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    def closeEvent(self, event) -> None:  # noqa: N802
        if self.runner.is_running():
            if not dialogs.ask(self, "Quit isoapp", "A run is in progress. Stop it and quit?\n\n"
                               "Its checkpoint is kept: File > Resume run continues it next time."):
                event.ignore()
                return
            log.info("stopping the run before closing")
            self.runner.shutdown(60000)
            if self.last_run:
                runs.set_status(self.last_run["options"]["work_dir"], "cancelled")
        self.settings.method_state = self.method_panel.state()
        self.settings.qs.setValue("window/geometry", self.saveGeometry())
        self.settings.qs.sync()
        self.fiji.close()
        remove_handler(self.log_panel.handler)
        super().closeEvent(event)
        if event.isAccepted() and self._gc_held:
            self._gc_held = False
            gcguard.release()
