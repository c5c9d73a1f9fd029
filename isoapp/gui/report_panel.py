"""The quality report shown after every run: blur and noise estimate, held-out gain, a plain warning.

It reads two optional dicts of ``RestoreResult.info`` (written by :func:`isoapp.restore.restore`):
``degradation`` (axial blur and camera noise, estimated from the stack or given by the user) and
``heldout`` (the method against interpolation on lateral planes it did not train on). When the
held-out PSNR gain is not positive, a banner says the restoration does not beat interpolation.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

log = logging.getLogger(__name__)

BANNER_STYLE = ("QLabel { background: #fff3cd; color: #664d03; border: 1px solid #e0b800; "
                "border-radius: 3px; padding: 4px; }")


def _f(value: Any, fmt: str) -> str:
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return "—"


def report_html(info: dict[str, Any], method_label: str = "") -> str:
    """The report as HTML ('' when ``info`` holds neither dict)."""
    parts = []
    deg = info.get("degradation")
    if isinstance(deg, dict):
        src = "estimated from the stack" if deg.get("source") == "estimated" else "as you gave it"
        parts.append(f"<b>Axial blur</b> ({src}): FWHM {_f(deg.get('axial_fwhm_um'), '.3g')} µm "
                     f"(σ {_f(deg.get('axial_sigma_px'), '.3g')} px); <b>noise</b>: std "
                     f"{_f(deg.get('noise_std_at_half'), '.3g')} at half range (shot gain "
                     f"{_f(deg.get('noise_gain'), '.3g')}, normalised units)")
    held = info.get("heldout")
    if isinstance(held, dict):
        gain = held.get("psnr_gain_db")
        sign = "+" if gain is not None and float(gain) > 0 else ""
        parts.append(f"<b>Held-out check</b> on {held.get('n_planes', '?')} lateral planes not used for "
                     f"training: PSNR {_f(held.get('psnr_method'), '.2f')} dB vs "
                     f"{_f(held.get('psnr_interp'), '.2f')} dB for interpolation "
                     f"(<b>{sign}{_f(gain, '.2f')} dB</b>), SSIM gain {_f(held.get('ssim_gain'), '+.3f')}")
    if not parts:
        return ""
    head = f"<b>Quality report</b>{' — ' + method_label if method_label else ''}<br>"
    return head + "<br>".join(parts)


def beats_interpolation(info: dict[str, Any]) -> bool | None:
    """False when the held-out PSNR gain is <= 0 dB, True when positive, None when unknown."""
    held = info.get("heldout")
    if not isinstance(held, dict) or held.get("psnr_gain_db") is None:
        return None
    try:
        return float(held["psnr_gain_db"]) > 0
    except (TypeError, ValueError):
        return None


class QualityReport(QWidget):
    """A warning banner (hidden unless needed) above the report text."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.banner = QLabel(self)
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet(BANNER_STYLE)
        self.banner.setVisible(False)
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setToolTip("blur and noise estimate and the held-out check of the last run")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.banner)
        lay.addWidget(self.text)
        self.clear()

    def clear(self) -> None:
        self.banner.setVisible(False)
        self.text.setText("")
        self.setVisible(False)

    def show_info(self, info: dict[str, Any], method_label: str = "") -> None:
        html = report_html(info, method_label)
        beats = beats_interpolation(info)
        if beats is False:
            gain = float(info["heldout"]["psnr_gain_db"])
            self.banner.setText(f"⚠ {method_label or 'This method'} does not beat plain interpolation on "
                                f"held-out planes ({gain:+.2f} dB). Try another method or preset, or check "
                                "the voxel size and PSF before using this result.")
        self.banner.setVisible(beats is False)
        self.text.setText(html)
        self.setVisible(bool(html))
