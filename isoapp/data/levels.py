"""Display levels of a stack: the auto contrast the GUI, Fiji hand-offs and the CLI's comparison outputs share."""

from __future__ import annotations

from pathlib import Path

import numpy as np

AUTO_PERCENTILES = (0.5, 99.8)
#: about how many voxels auto contrast and the histogram look at (a strided subsample): enough for
#: the 99.8th percentile (~500 voxels above it), and a few ms in the GUI thread at any stack size
STATS_SAMPLE = 250_000


def stats_sample(data: np.ndarray, n: int = STATS_SAMPLE) -> np.ndarray:
    """About ``n`` finite values of ``data``, evenly strided (a view where ``data`` is contiguous).

    A lazy stack read plane by plane (:class:`isoapp.quality.planes.PlaneReader`) gives its own
    sample from a few planes instead of being read whole.
    """
    if hasattr(data, "stats_sample"):
        a = np.asarray(data.stats_sample(n))
    else:
        a = np.asarray(data)
    if a.size > n:
        if a.flags.c_contiguous:
            a = a.reshape(-1)[:: -(-a.size // n)]
        else:
            step = max(1, int(np.ceil((a.size / n) ** (1 / max(a.ndim, 1)))))
            a = a[(slice(None, None, step),) * a.ndim]
    a = a.ravel()
    return a[np.isfinite(a)] if a.dtype.kind == "f" else a


def auto_levels(data: np.ndarray, percentiles: tuple[float, float] = AUTO_PERCENTILES) -> tuple[float, float]:
    """Display range from percentiles of (a subsample of) ``data``."""
    sample = stats_sample(data)
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, percentiles))
    if hi <= lo:
        hi = lo + max(abs(lo) * 1e-3, 1e-6)
    return lo, hi


def joint_levels(*arrays: np.ndarray, percentiles: tuple[float, float] = AUTO_PERCENTILES) -> tuple[float, float]:
    """One display range for several stacks shown side by side (e.g. a restoration and a deconvolution)."""
    return auto_levels(np.concatenate([stats_sample(a) for a in arrays]), percentiles)


def write_display_range(path: str | Path, lo: float, hi: float) -> bool:
    """Set an ImageJ TIFF's display range (``min=``/``max=`` in its description), in place; False if not one.

    ImageJ otherwise takes a float (or 16-bit) stack's display range from its first slice. 8-bit
    stacks keep 0-255.
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.is_imagej or tif.pages[0].dtype == np.uint8:
            return False
        desc = tif.pages[0].description
    lines = [ln for ln in desc.splitlines() if ln and not ln.startswith(("min=", "max="))]
    tifffile.tiffcomment(path, comment="\n".join([*lines, f"min={float(lo)!r}", f"max={float(hi)!r}", ""]).encode("ascii"))
    return True
