"""Preferences: the Fiji.app folder, run checkpoints, large stacks (memory limit, Dask scheduler), the Fiji doctor."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import dialogs
from .fiji_actions import doctor_text
from .settings import AppSettings


class SettingsDialog(QDialog):
    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("isoapp settings")
        self.settings = settings
        self.fiji = QLineEdit(settings.fiji_dir, self)
        self.fiji.setPlaceholderText("auto-detect (FIJI_DIR or the usual install places)")
        self.work = QLineEdit(str(settings.work_root), self)
        form = QFormLayout()
        form.addRow("Fiji.app folder", self._with_browse(self.fiji, "Fiji.app folder"))
        form.addRow("Checkpoint folder", self._with_browse(self.work, "Folder for run checkpoints"))
        self.memory = QSpinBox(self)
        self.memory.setRange(0, 1 << 30)
        self.memory.setSuffix(" MiB")
        self.memory.setSpecialValueText("half the free memory")
        self.memory.setValue(settings.memory_limit_mb)
        self.memory.setToolTip("a stack whose restoration needs more memory than this is viewed from its file and "
                               "restored block by block into an OME-Zarr or OME-TIFF file")
        form.addRow("Restore in memory up to", self.memory)
        self.scheduler = QLineEdit(settings.scheduler, self)
        self.scheduler.setPlaceholderText("empty: restore blocks on this computer; tcp://host:8786 for a Dask cluster")
        form.addRow("Dask scheduler (block-wise runs)", self.scheduler)
        self.report = QPlainTextEdit(self)
        self.report.setReadOnly(True)
        check = QPushButton("Check Fiji setup", self)
        check.clicked.connect(self.run_doctor)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel,
                                   self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(check)
        lay.addWidget(self.report, 1)
        lay.addWidget(buttons)
        self.resize(640, 420)

    def _with_browse(self, edit: QLineEdit, title: str) -> QWidget:
        w = QWidget(self)
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        b = QPushButton("Browse…", w)
        b.clicked.connect(lambda: edit.setText(dialogs.open_dir(self, title, edit.text()) or edit.text()))
        row.addWidget(b)
        return w

    def run_doctor(self) -> None:
        self.report.setPlainText(doctor_text(self.fiji.text().strip()))

    def accept(self) -> None:
        self.settings.fiji_dir = self.fiji.text().strip()
        self.settings.memory_limit_mb = self.memory.value()
        self.settings.scheduler = self.scheduler.text()
        if self.work.text().strip():
            self.settings.work_root = self.work.text().strip()
        super().accept()
