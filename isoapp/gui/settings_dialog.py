"""Preferences: the Fiji.app folder, the folder for run checkpoints, and the Fiji doctor report."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
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
        if self.work.text().strip():
            self.settings.work_root = self.work.text().strip()
        super().accept()
