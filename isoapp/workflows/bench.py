"""``isoapp bench``: reproduce the seed papers' phantom evaluations for every method.

For each phantom (tubes, beads, nuclei) and method it reports PSNR/SSIM/MS-SSIM against the
ground truth blurred by the isotropic lateral PSF, bead FWHM (lateral and axial), the tube
FWHM mismatch, SEG after a standard segmentation (IsoNet's protocol), training and restoration
time and peak memory. Method specs may carry a PSF variant: ``isonet`` uses the phantom's true
PSF, ``isonet:wrongpsf`` one whose axial sigma is 50% too large (the Self-Net comparison).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError
from ..core.memory import current_rss_bytes
from ..training.events import EventCallback, ignore_events

log = logging.getLogger(__name__)

DEFAULT_PHANTOMS = ("tubes", "beads", "nuclei")
WRONG_PSF_SCALE = 1.5


class PeakRSS:
    """Sample this process's resident memory in a thread; ``peak - start`` is the run's footprint."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.start, self.peak = interval, self.read(), 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> int:
        return current_rss_bytes()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.read())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self.start
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.read())

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def default_methods() -> list[str]:
    """The methods bench runs when none are named: each with a ``bench_rank``, in that order, then their
    ``bench_companions`` (variants to compare them with)."""
    from ..methods import available_methods, get_method

    classes = sorted((get_method(n) for n in available_methods() if get_method(n).bench_rank is not None),
                     key=lambda c: (c.bench_rank, c.name))
    out = [c.name for c in classes]
    for c in classes:
        out += [v for v in c.bench_companions if v not in out]
    return out


def parse_spec(spec: str) -> tuple[str, float]:
    """``name[:wrongpsf]`` -> (method, sigma_z scale of the PSF given to it)."""
    name, _, variant = spec.partition(":")
    if variant in ("", "truepsf"):
        return name, 1.0
    if variant == "wrongpsf":
        return name, WRONG_PSF_SCALE
    raise ConfigError(f"unknown method variant {variant!r} in {spec!r}; use NAME, NAME:truepsf or NAME:wrongpsf")


def phantom_shape(size: int, factor: float) -> tuple[int, int, int]:
    """The ground-truth shape for ``--size S``: about S/4 + 1 planes of S x S (65x256x256 for S=256).

    The plane count is trimmed so that the restore grid of the degraded input lands exactly on it.
    """
    nz_in = max(3, int(np.floor((size // 4) / factor)) + 1)
    nz = int(np.floor((nz_in - 1) * factor)) + 1
    return (nz, size, size)


def evaluate(ph, restored: np.ndarray, voxel_size) -> dict:
    """Quality figures of ``restored`` against phantom ``ph`` (on the gt grid)."""
    from ..quality.metrics import bead_fwhm, compute_metrics, seg_score, segment, tube_fwhm_mismatch

    n = min(restored.shape[0], ph.gt.shape[0])
    ref = ph.gt_iso.data[:n]
    img = restored[:n]
    row = {k: v for k, v in compute_metrics(ref, img).items() if k in ("psnr", "ssim", "ms_ssim", "nrmse")}
    kind = ph.params["kind"]
    if kind == "beads":
        c = np.asarray(ph.params["centres"])
        c = c[c[:, 0] < n]
        f = bead_fwhm(img, centres=c, voxel_size=voxel_size)
        row.update(fwhm_lateral_um=f["fwhm_lateral"], fwhm_axial_um=f["fwhm_axial"],
                   fwhm_ratio=f["fwhm_axial"] / f["fwhm_lateral"] if f["fwhm_lateral"] else float("nan"),
                   n_beads=f["n"])
    elif kind == "tubes":
        row["tube_fwhm_mismatch"] = tube_fwhm_mismatch(img, ph.gt.data[:n], voxel_size)
    elif kind in ("nuclei", "membranes"):
        labels = ph.params["labels"][:n]
        row["seg"] = seg_score(labels, segment(img))
    return row


def run_bench(methods: list[str] | None = None, phantoms: list[str] | tuple[str, ...] = DEFAULT_PHANTOMS, *,
              size: int = 128, factor: float = 4.0, preset: str = "fast", steps: int | None = None,
              device: str = "auto", seed: int = 0, out_dir: str | Path | None = None,
              emit: EventCallback = ignore_events) -> list[dict]:
    """Run every method on every phantom; returns one dict per (phantom, method)."""
    from ..methods import get_method
    from ..quality.phantoms import make_phantom
    from ..run.restore import restore

    specs = methods or default_methods()
    for s in specs:
        get_method(parse_spec(s)[0])
    rows = []
    for kind in phantoms:
        ph = make_phantom(kind, phantom_shape(size, factor), factor=factor, seed=seed)
        for spec in specs:
            name, scale = parse_spec(spec)
            kw = {}
            if get_method(name).uses_psf:
                kw["psf"] = {"kind": "gaussian", "fwhm_um": ph.psf_fwhm_um(scale)}
            log.info("bench: %s on %s %s", spec, kind, ph.degraded.shape)
            with PeakRSS() as mem:
                res = restore(ph.degraded, name, preset=preset, steps=steps, device=device, seed=seed,
                              emit=emit, **kw)
            row = {"phantom": kind, "method": spec, **evaluate(ph, res.volume.data, res.volume.voxel_size),
                   "train_s": round(res.train_seconds, 2), "restore_s": round(res.restore_seconds, 2),
                   "peak_mem_mb": round(mem.delta_mb, 1), "peak_cuda_mb": round(res.peak_cuda_bytes / 2**20, 1),
                   "report": res.method.report()}
            rows.append(row)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"size": size, "factor": factor, "preset": preset, "steps": steps, "device": device, "seed": seed,
                "shape": phantom_shape(size, factor), "cpu_count": os.cpu_count(),
                "reference": "ground truth blurred by the isotropic lateral PSF", "rows": rows,
                "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        (out / "bench.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        (out / "bench.md").write_text(format_markdown(rows) + "\n")
    return rows


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


COLUMNS = [("phantom", "phantom", "{}"), ("method", "method", "{}"), ("psnr", "PSNR", "{:.2f}"),
           ("ssim", "SSIM", "{:.3f}"), ("ms_ssim", "MS-SSIM", "{:.3f}"), ("fwhm_lateral_um", "FWHM xy µm", "{:.3f}"),
           ("fwhm_axial_um", "FWHM z µm", "{:.3f}"), ("fwhm_ratio", "z/xy", "{:.2f}"),
           ("tube_fwhm_mismatch", "tube mismatch", "{:.3f}"), ("seg", "SEG", "{:.3f}"), ("train_s", "train s", "{:.1f}"),
           ("restore_s", "restore s", "{:.1f}"), ("peak_mem_mb", "peak MB", "{:.0f}")]


def format_markdown(rows: list[dict]) -> str:
    """A markdown table with the columns any row has."""
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for key, _, fmt in cols:
            v = r.get(key)
            cells.append("" if v is None else fmt.format(v) if not isinstance(v, float) or np.isfinite(v) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    extra = [f"- {r['phantom']}/{r['method']}: " + ", ".join(f"{k}={v}" for k, v in r["report"].items())
             for r in rows if set(r.get("report", {})) - {"parameters"}]
    return "\n".join(lines + ([""] + extra if extra else []))
