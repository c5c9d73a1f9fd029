"""The quality report shown after every run: the degradation model, the held-out self-check with what it
means (measured under that model: optimistic, docs/USAGE.md), a plain warning.

It reads optional entries of ``RestoreResult.info`` (written by :func:`isoapp.run.restore.restore`):
``degradation`` (axial blur and camera noise, estimated from the stack or given by the user),
``axial`` (the method against interpolation at withheld recorded planes), ``heldout`` (the lateral
check: planes degraded by the estimated model, optimistic), ``consistency`` (the output through the
model against the recorded planes, in noise units) and, after an ``auto`` run,
``chosen``/``reason``/``candidates`` (:meth:`isoapp.methods.auto.Auto.selection`): which method auto
kept and why, in the methods' human names. Every figure says what it compares with; none is a bare
bold dB. When the gain of the axial check (else the lateral one) is not positive, a banner says the
restoration does not beat interpolation (not for interpolation itself).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..methods import method_label as _method_label
from ..quality.axial import axial_text
from ..quality.consistency import consistency_lines
from ..quality.heldout import planes_text, se_text

log = logging.getLogger(__name__)

BANNER_STYLE = ("QLabel { background: #fff3cd; color: #664d03; border: 1px solid #e0b800; "
                "border-radius: 3px; padding: 4px; }")


def _f(value: Any, fmt: str) -> str:
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return "—"


def _label(name: Any, short: bool = False) -> str:
    """A method's human name (its id when it is not a registered method); ``short`` drops the
    parenthesis ("IsoNet (CARE isotropic)" -> "IsoNet")."""
    try:
        label = _method_label(str(name))
    except Exception:  # noqa: BLE001 - an unknown id (e.g. a method from a newer version) shows as is
        label = str(name)
    return label.split(" (")[0] if short else label


#: methods that are interpolation themselves: "does not beat interpolation" says nothing about them
INTERPOLATIONS = ("linear", "cubic")


def auto_choice(info: dict[str, Any]) -> str:
    """What ``auto`` chose and how the candidates did, in plain words ('' when it was not an auto run).

    E.g. "Auto chose IsoNet (held-out +3.10 dB vs Self-Net +2.40 dB, over linear interpolation)";
    a skipped candidate is named with "skipped".
    """
    chosen = info.get("chosen")
    if not chosen:
        return ""
    others = []
    chosen_gain = None
    for trial in info.get("candidates") or []:
        if not isinstance(trial, dict) or "method" not in trial:
            continue
        name = _label(trial["method"], short=True)
        if "skipped" in trial:
            others.append(f"{name} skipped")
        elif trial["method"] == chosen:
            chosen_gain = trial.get("heldout_gain_db")
        else:
            others.append(f"{name} {_f(trial.get('heldout_gain_db'), '+.2f')} dB")
    text = f"Auto chose {_label(chosen, short=True)}"
    if chosen_gain is not None:
        vs = f" vs {', '.join(others)}" if others else ""
        return text + f" (held-out {_f(chosen_gain, '+.2f')} dB{vs}, over linear interpolation)"
    if others:  # cubic: no candidate was good enough
        text += f" (held-out, over linear interpolation: {', '.join(others)})"
    return text


def result_label(info: dict[str, Any], fallback: str = "") -> str:
    """The name a result goes by in the Compare tab: the method, and for ``auto`` the one it chose."""
    name = info.get("method")
    if not name:
        return fallback
    label = _label(name)
    return f"Auto: {_label(info['chosen'], short=True)}" if info.get("chosen") else label


def heldout_text(held: dict[str, Any], model: str = "estimated") -> str:
    """The held-out check with its meaning, e.g. "held-out check on 4 lateral planes degraded by the
    estimated model (optimistic; see docs): +9.91 ± 1.54 dB over linear" (docs/USAGE.md: it has
    overstated the gain on the stacks' own withheld planes by up to 9 dB)."""
    return (f"held-out check on {planes_text(held)} lateral planes degraded by the {model} model "
            f"(optimistic; see docs): {_f(held.get('psnr_gain_db'), '+.2f')}{se_text(held)} dB over linear")


def report_html(info: dict[str, Any], method_label: str = "") -> str:
    """The report as HTML ('' when ``info`` holds none of its entries); each check says what it
    measures, no number stands alone in bold."""
    parts = []
    choice = auto_choice(info)
    if choice:
        reason = info.get("reason")
        fallback = info.get("chosen") in INTERPOLATIONS  # the reason then says why no candidate was kept
        head, _, rest = choice.partition(" (")
        parts.append(f"<b>{head}</b>" + (f" ({rest}" if rest else "")
                     + (f"<br><small>{reason}</small>" if reason and fallback else ""))
    deg = info.get("degradation")
    model = "estimated"
    if isinstance(deg, dict):
        given = deg.get("source") != "estimated"
        model = "given" if given else "estimated"
        src = "as you gave it" if given else "estimated from the stack"
        parts.append(f"<b>Degradation model</b> ({src}; training pairs and the held-out check are made with "
                     f"it): axial blur FWHM {_f(deg.get('axial_fwhm_um'), '.3g')} µm "
                     f"(σ {_f(deg.get('axial_sigma_px'), '.3g')} px); noise std "
                     f"{_f(deg.get('noise_std_at_half'), '.3g')} at half range (shot gain "
                     f"{_f(deg.get('noise_gain'), '.3g')}, normalised units)")
    ax = info.get("axial")
    if isinstance(ax, dict):
        parts.append("<b>Axial check</b>: " + axial_text(ax).removeprefix("axial check "))
    held = info.get("heldout")
    if isinstance(held, dict):
        text = heldout_text(held, model)
        parts.append(f"<b>Self-check</b>: {text} "
                     f"(PSNR {_f(held.get('psnr_method'), '.2f')} vs {_f(held.get('psnr_interp'), '.2f')} dB, "
                     f"SSIM gain {_f(held.get('ssim_gain'), '+.3f')}). A positive gain is necessary, not "
                     "sufficient: it is measured under the same model the method trained on.")
    con = info.get("consistency")
    if isinstance(con, dict):
        parts.append("<br>".join(consistency_lines(con))
                     + ("; where: Compare &gt; View &gt; Residual" if "skipped" not in con else ""))
    if not parts:
        return ""
    head = f"<b>Quality report</b>{' — ' + method_label if method_label else ''}<br>"
    return head + "<br>".join(parts)


def checked(info: dict[str, Any]) -> dict[str, Any] | None:
    """The check a verdict rests on: the axial one where it ran, else the lateral one (None: neither)."""
    ax = info.get("axial")
    if isinstance(ax, dict) and "skipped" not in ax:
        return ax
    held = info.get("heldout")
    return held if isinstance(held, dict) else None


def beats_interpolation(info: dict[str, Any]) -> bool | None:
    """False when the held-out PSNR gain is <= 0 dB, True when positive, None when unknown (or when the
    result is interpolation itself, e.g. auto falling back to cubic)."""
    if info.get("method") in INTERPOLATIONS or info.get("chosen") in INTERPOLATIONS:
        return None
    held = checked(info)
    if held is None or held.get("psnr_gain_db") is None:
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
        self.text.setToolTip("blur and noise estimate, the axial and lateral checks and the data consistency of the last run")
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
            held = checked(info) or {}
            where = "withheld recorded planes" if "spacing_ratio" in held else "held-out lateral planes"
            self.banner.setText(f"⚠ {method_label or 'This method'} does not beat plain interpolation on "
                                f"{where} ({float(held['psnr_gain_db']):+.2f} dB). Try another method or preset, "
                                "or check the voxel size and PSF before using this result.")
        self.banner.setVisible(beats is False)
        self.text.setText(html)
        self.setVisible(bool(html))
