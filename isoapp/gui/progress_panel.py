"""Run progress: stage, progress bar with a whole-run ETA, live loss plots and live XZ/YZ previews.

Each training stage group gets its own loss plot (Self-Net's stage 1 losses are ~10, its stage 2
losses ~0.01: one axis would flatten one of them); epochs of the same stage continue one curve.
A resumed run keeps the history it had before it was cancelled.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSplitter, QVBoxLayout, QWidget

from ..data.levels import joint_levels
from ..training.events import PreviewEvent, ProgressEvent
from .estimate import RunClock, is_training_step
from .loss_axis import LossAxis

log = logging.getLogger(__name__)

#: the height (px) a loss plot keeps however many stages there are: below it the tick labels of a
#: log axis overlap (the splitter takes the room from the previews instead)
PLOT_MIN_HEIGHT = 95


def stage_group(stage: str) -> str:
    """The loss plot a training stage belongs to: epochs (``_e<N>``) share one."""
    return re.sub(r"_e\d+", "", stage)


def format_eta(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return ""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class FittingProgressBar(QProgressBar):
    """A progress bar whose text is elided to its width (the full text is in :meth:`full_text`).

    Qt draws the whole text centred on the bar and clips it at the edges, so a long stage name or
    "cancelled at 40% (Resume continues)" was cut at both ends in a narrow dock.
    """

    def full_text(self) -> str:
        return super().text()

    def text_room(self) -> int:
        """Pixels available for the text (the bar less a small margin each side)."""
        return max(self.contentsRect().width() - 8, 0)

    def text(self) -> str:  # the style paints what this returns
        full = super().text()
        return self.fontMetrics().elidedText(full, Qt.TextElideMode.ElideMiddle, self.text_room())


PREVIEW_KEYS = ("in_xz", "xz", "in_yz", "yz")
PREVIEW_TITLES = {"in_xz": "input XZ (interpolated)", "xz": "restored XZ (live)",
                  "in_yz": "input YZ (interpolated)", "yz": "restored YZ (live)"}


def method_of(stage: str) -> str:
    """The human name of the method a training stage belongs to ("selfnet_e0_stage1" -> "Self-Net")."""
    from ..methods import method_label

    name = stage.split("_")[0]
    try:
        return method_label(name).split(" (")[0]
    except Exception:  # noqa: BLE001 - not a method id: the stage's own name
        return name


class PreviewCanvas(pg.GraphicsLayoutWidget):
    """The previews' canvas: rearranges them whenever its size changes."""

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        panel = self.parent()
        if isinstance(panel, ProgressPanel) and hasattr(panel, "_columns"):  # not while it is built
            panel.arrange()


class ProgressPanel(QWidget):
    """Shows what the worker relays; knows nothing about the worker itself."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stage_label = QLabel("Idle", self)
        self.stage_label.setWordWrap(True)
        self.bar = FittingProgressBar(self)
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self.eta = QLabel("", self)
        top = QHBoxLayout()  # the stage and ETA above a bar that has the whole width for its text
        top.addWidget(self.stage_label, 1)
        top.addWidget(self.eta, 0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)

        self.bar.setToolTip("progress of the current stage")
        self.eta.setToolTip("time left for the whole run (all stages), refined from the measured speed")
        self.loss_view = pg.GraphicsLayoutWidget(self)
        self.loss_view.setBackground("w")
        self.loss_view.setToolTip("training loss per stage (blue) and validation loss (orange dots), log scale")
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, tuple] = {}
        self.series: dict[str, dict[str, list]] = {}
        self._offsets: dict[str, int] = {}  # stage -> x offset inside its group
        self._group_end: dict[str, int] = {}
        self._last_val: dict[str, float] = {}  # stage -> the validation loss last shown
        self.loss_steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.val_losses: list[float] = []
        self.clock: RunClock | None = None
        self.position_text = ""

        self.preview = PreviewCanvas(self)
        self.preview.setBackground("k")
        self.boxes: dict[str, pg.ViewBox] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.titles: dict[str, pg.LabelItem] = {}
        for key in PREVIEW_KEYS:
            self.titles[key] = pg.LabelItem(PREVIEW_TITLES[key], color="#ffd700", size="8pt")
            box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
            img = pg.ImageItem(axisOrder="row-major")
            box.addItem(img)
            self.boxes[key], self.images[key] = box, img
        self._columns = 0
        self._arrange(1)
        self.boxes["xz"].setXLink(self.boxes["in_xz"])
        self.boxes["xz"].setYLink(self.boxes["in_xz"])
        self.boxes["yz"].setXLink(self.boxes["in_yz"])
        self.boxes["yz"].setYLink(self.boxes["in_yz"])
        self.preview_label = QLabel("Live preview: waiting for the first preview", self)
        self.preview_label.setWordWrap(True)
        self.voxel_out = (1.0, 1.0, 1.0)
        self.levels: tuple[float, float] | None = None
        self.preview_count = 0

        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.loss_view)
        pw = QWidget(self)
        pl = QVBoxLayout(pw)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.preview, 1)
        pl.addWidget(self.preview_label)
        split.addWidget(pw)
        split.setSizes([220, 560])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(self.bar)
        lay.addWidget(split, 1)

    # ------------------------------------------------------------------ run lifecycle
    def _clear_losses(self) -> None:
        self.loss_view.clear()
        self.loss_view.setMinimumHeight(0)
        self.plots.clear()
        self.curves.clear()
        self.series.clear()
        self._offsets.clear()
        self._group_end.clear()
        self._last_val.clear()
        for lst in (self.loss_steps, self.losses, self.val_steps, self.val_losses):
            lst.clear()

    def reset(self) -> None:
        """Back to idle: no curves, previews, bar or text of an earlier run (a new stack was opened)."""
        self._clear_losses()
        for img in self.images.values():
            img.clear()
        self.preview_count = 0
        self.clock = None
        self.stage_label.setText("Idle")
        self.preview_label.setText("Live preview: appears while a network trains")
        self._reset_bar()

    def _reset_bar(self) -> None:
        self.bar.setValue(0)
        self.bar.setFormat("%p%")
        self.eta.setText("")

    def start(self, voxel_out: tuple[float, float, float], position_text: str, *, keep_history: bool = False,
              clock: RunClock | None = None, live: bool = True) -> None:
        """Reset for a new run (the input's planes follow: :meth:`show_inputs`); ``live=False``: a method
        that does not train (its result shows at the end).

        ``keep_history`` (a resumed run) keeps the loss curves of the run it continues.
        """
        if not keep_history:
            self._clear_losses()
        self.clock = clock
        self.preview_count = 0
        self.voxel_out = tuple(float(v) for v in voxel_out)
        self.levels = None
        for img in self.images.values():
            img.clear()
        self._set_method("")
        self.preview_label.setText(f"Live preview at {position_text}: waiting for the first preview" if live else
                                   "No live preview: this method does not train (its result shows at the end)")
        self.position_text = position_text
        self.stage_label.setText("Starting…")
        self._reset_bar()

    def show_inputs(self, input_planes: dict[str, np.ndarray]) -> None:
        """The input's planes ('xz' (Z', X), 'yz' (Z', Y)) on the output grid; they set the display range
        (``levels`` where given: the planes' joint auto levels)."""
        self.levels = input_planes.get("levels") or joint_levels(input_planes["xz"], input_planes["yz"])
        step = input_planes.get("step", 1)
        for key in ("xz", "yz"):
            self._show(f"in_{key}", input_planes[key], step)
            if self.images[key].image is None:
                self._show(key, np.zeros_like(input_planes[key]), step)
            else:  # a live preview came first: shown now with the input's range
                self.images[key].setLevels(self.levels)
        self._columns = 0
        self.arrange()

    def _show(self, key: str, plane: np.ndarray, step: int = 1) -> None:
        """Draw ``plane`` (shrunk by ``step`` for display: :func:`shrink_for_display`) at its physical size."""
        dz, dy, dx = (v * step for v in self.voxel_out)
        n_z, n_l = plane.shape  # planes are (Z', X) or (Z', Y); shown with z down
        lateral = dx if key.endswith("xz") else dy
        img = self.images[key]
        img.setImage(np.asarray(plane, np.float32), autoLevels=False, levels=self.levels or (0, 1))
        img.setRect(QRectF(0, 0, n_l * lateral, n_z * dz))
        img.extent_um = (n_l * lateral, n_z * dz)

    # ------------------------------------------------------------------ preview layout
    def _plane_um(self) -> tuple[float, float]:
        """Width and height (µm) of the larger preview plane (XZ or YZ)."""
        ims = [self.images[k] for k in ("in_xz", "in_yz")]
        if any(im.image is None for im in ims):
            return 1.0, 1.0
        return max(ims[0].extent_um[0], ims[1].extent_um[0]), ims[0].extent_um[1]

    def arrange(self) -> None:
        """1x4, 2x2 or 4x1 previews: whichever shows the planes largest in this canvas, at their aspect."""
        w_um, h_um = self._plane_um()
        width, height = self.preview.width(), self.preview.height()
        label = 18  # px of a title row

        def scale(cols: int) -> float:
            return min(width / cols / w_um, (height / (4 // cols) - label) / h_um)

        self._arrange(max((1, 2, 4), key=scale))

    def _arrange(self, columns: int) -> None:
        if columns == self._columns:
            return
        self._columns = columns
        ci = self.preview.ci
        for key in PREVIEW_KEYS:
            for item in (self.titles[key], self.boxes[key]):
                if item in ci.items:
                    ci.removeItem(item)
        for i, key in enumerate(PREVIEW_KEYS):  # in_xz, xz, in_yz, yz: input beside (or above) restored
            row, col = divmod(i, columns)
            ci.addItem(self.titles[key], row=2 * row, col=col)
            ci.addItem(self.boxes[key], row=2 * row + 1, col=col)
        for key in ("in_xz", "in_yz"):
            if self.images[key].image is not None:
                self.boxes[key].autoRange(padding=0.02)

    def _set_method(self, name: str) -> None:
        for key, what in (("xz", "XZ"), ("yz", "YZ")):
            self.titles[key].setText(f"{name} {what}" if name else PREVIEW_TITLES[key])

    def show_result(self, label: str, planes: dict[str, np.ndarray]) -> None:
        """The run ended: the restored previews show the result it kept (auto: the chosen method)."""
        for key in ("xz", "yz"):
            if planes.get(key) is not None:
                self._show(key, np.asarray(planes[key]), planes.get("step", 1))
        name = label.replace("Auto: ", "")
        for key, what in (("xz", "XZ"), ("yz", "YZ")):
            self.titles[key].setText(f"{name} {what} (result)")
        self.preview_label.setText(f"Result at {self.position_text}: {label}")

    def set_stage(self, stage: str, description: str) -> None:
        """The header: a training stage says its method (and Self-Net's epoch and stage) and, when the
        run trains more than this stage, how many steps the whole run trains."""
        text = description or stage
        m = re.fullmatch(r"([a-z]+)(?:_e(\d+)_stage(\d+))?", stage)
        if m and description.startswith("training ") and method_of(stage) != m[1]:
            where = f" epoch {int(m[2]) + 1}, stage {m[3]}" if m[2] else ""
            text = f"{method_of(stage)}{where}: {description}"
            loops = self.clock.estimate.train_loops if self.clock is not None else 0
            steps = re.match(r"training (\d+) steps", description)
            if loops and steps and int(steps[1]) != loops:
                text += f" ({loops} training steps in the whole run)"
        self.stage_label.setText(text)

    def _plot(self, group: str) -> pg.PlotItem:
        if group not in self.plots:
            plot = self.loss_view.addPlot(row=len(self.plots), col=0, axisItems={"left": LossAxis("left")})
            plot.setTitle(group.replace("_", " "), size="9pt")
            plot.setLogMode(False, True)
            plot.showGrid(x=True, y=True, alpha=0.2)
            font = self.font()
            font.setPointSizeF(max(font.pointSizeF() * 0.8, 6.0))
            for side in ("left", "bottom"):
                ax = plot.getAxis(side)
                # small tick labels, major ticks only: no overlapping numbers in a narrow dock
                ax.setStyle(tickFont=font, autoExpandTextSpace=True, maxTextLevel=0, tickTextOffset=2)
                ax.setTextPen("k")
            plot.getAxis("left").setWidth(52)
            plot.setMinimumHeight(PLOT_MIN_HEIGHT)
            loss = plot.plot([], [], pen=pg.mkPen("#3498db", width=2))
            val = plot.plot([], [], pen=None, symbol="o", symbolSize=6, symbolBrush="#e67e22")
            self.plots[group] = plot
            _l, top, _r, bottom = self.loss_view.ci.layout.getContentsMargins()
            spacing = self.loss_view.ci.layout.verticalSpacing()
            self.loss_view.setMinimumHeight(int(len(self.plots) * (PLOT_MIN_HEIGHT + spacing) + top + bottom))
            self.curves[group] = (loss, val)
            self.series[group] = {"x": [], "y": [], "vx": [], "vy": []}
        return self.plots[group]

    def _x(self, stage: str, group: str, step: int) -> int:
        if stage not in self._offsets:
            self._offsets[stage] = self._group_end.get(group, 0)
        x = self._offsets[stage] + int(step)
        self._group_end[group] = max(self._group_end.get(group, 0), x)
        return x

    def on_progress(self, ev: ProgressEvent) -> None:
        total = max(int(ev.total), 1)
        self.bar.setValue(int(round(100 * min(ev.step, total) / total)))
        self.bar.setFormat(f"{ev.stage} {ev.step}/{ev.total}")
        self.bar.setToolTip(f"progress of the current stage: {self.bar.full_text()}")
        training = is_training_step(ev)
        if self.clock is not None:
            self.clock.update(ev.stage, int(ev.step), int(ev.total), training)
            eta = format_eta(self.clock.eta())
            self.eta.setText(f"ETA {eta} (whole run)" if eta else "")
        else:
            eta = format_eta(ev.eta_s)
            self.eta.setText(f"ETA {eta}" if eta else "")
        if ev.stage == "restore":
            return
        group = stage_group(ev.stage)
        has_loss = ev.loss is not None and np.isfinite(ev.loss) and ev.loss > 0
        has_val = ev.val_loss is not None and np.isfinite(ev.val_loss) and ev.val_loss > 0
        if not (has_loss or has_val):
            return
        self._plot(group)
        x = self._x(ev.stage, group, int(ev.step))
        ser = self.series[group]
        loss_curve, val_curve = self.curves[group]
        if has_loss:
            self.loss_steps.append(int(ev.step))
            self.losses.append(float(ev.loss))
            ser["x"].append(x)
            ser["y"].append(float(ev.loss))
            loss_curve.setData(ser["x"], ser["y"])
        # the trainer repeats the last validation loss on every step until the next validation:
        # one point per validation, not a row of dots
        new_val = has_val and self._last_val.get(ev.stage) != float(ev.val_loss)
        if has_val:
            self._last_val[ev.stage] = float(ev.val_loss)
        if new_val and (not ser["vx"] or ser["vx"][-1] != x):
            self.val_steps.append(int(ev.step))
            self.val_losses.append(float(ev.val_loss))
            ser["vx"].append(x)
            ser["vy"].append(float(ev.val_loss))
            val_curve.setData(ser["vx"], ser["vy"])

    def on_preview(self, ev: PreviewEvent) -> None:
        self.preview_count += 1
        for key in ("xz", "yz"):
            plane = ev.planes.get(key)
            if plane is not None:
                self._show(key, np.asarray(plane), ev.planes.get("step", 1))
        name = method_of(ev.stage)
        self._set_method(f"{name} (live)")
        self.preview_label.setText(f"Live preview at {self.position_text}: {name}, {ev.stage} step {ev.step}")

    def finish(self, text: str, state: str = "done") -> None:
        """The run ended (``state``: done, failed or cancelled); a full bar only for a finished run."""
        self.stage_label.setText(text)
        if state == "done":
            self.bar.setValue(100)
            self.bar.setFormat("done")
        elif state == "failed":
            self.bar.setValue(0)
            self.bar.setFormat("failed")
        else:
            self.bar.setFormat("cancelled at %p% (Resume continues)")
        self.bar.setToolTip(self.bar.full_text())
        self.eta.setText("")
