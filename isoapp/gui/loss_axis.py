"""The log-scale loss axis of the progress panel's plots (kept apart so each module stays small)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFontMetrics


class LossAxis(pg.AxisItem):
    """A log-scale loss axis whose labelled ticks never overlap.

    pyqtgraph labels every 1..9 mantissa when the range spans less than about a decade, however
    short the axis, so the numbers pile up. Here the labelled ticks are the finest of 1..9, 1-2-5,
    1-3 or decades (then every 2nd, 5th, ... decade) that leaves ``min_gap`` pixels between labels;
    the rest stay unlabelled minor ticks.
    """

    MANTISSAS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 5), (1, 3), (1,))

    def min_gap(self) -> float:
        """Pixels between the centres of two labels: a text height and a bit."""
        font = self.style.get("tickFont") or self.font()
        return QFontMetrics(font).height() * 1.3

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802, N803 - pyqtgraph naming
        ticks = super().logTickValues(minVal, maxVal, size, stdTicks)
        lo, hi = sorted((float(minVal), float(maxVal)))
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo or size <= 0:
            return ticks
        px_per_decade = size / (hi - lo)
        decades = range(int(np.floor(lo)), int(np.ceil(hi)) + 1)
        chosen: list[float] = []
        for mantissas in self.MANTISSAS:
            vals = sorted(d + np.log10(m) for d in decades for m in mantissas)
            vals = [v for v in vals if lo <= v <= hi]
            gaps = np.diff([d + np.log10(m) for d in decades for m in mantissas])
            if len(gaps) == 0 or gaps.min() * px_per_decade >= self.min_gap():
                chosen = vals
                break
        else:  # even one label per decade is too dense: every n-th decade
            every = int(np.ceil(self.min_gap() / px_per_decade))
            chosen = [float(d) for d in decades if d % every == 0 and lo <= d <= hi]
        if not chosen:  # a range inside one step of the finest set: keep pyqtgraph's ticks
            return ticks
        minor = [v for _sp, level in ticks for v in level if all(abs(v - c) > 1e-9 for c in chosen)]
        return [(None, chosen), (None, minor)]

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph naming
        """Plain numbers (10, 0.05) where short, pyqtgraph's 10ⁿ notation otherwise."""
        out = super().logTickStrings(values, scale, spacing)
        for i, v in enumerate(10 ** np.asarray(values, float) * scale):
            if 1e-3 <= abs(v) < 1e4:
                out[i] = f"{v:.1g}" if abs(v) < 10 else f"{v:.0f}"
        return out
