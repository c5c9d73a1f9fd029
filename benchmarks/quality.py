"""Independent quality suite: every method on stacks its own forward model did not make.

A benchmark, not a unit test (see docs/QUALITY.md). Cases:

- **phantoms** from ``benchmarks/indep_phantoms.py`` (written independently of isoapp's
  phantoms, PSFs and degradation): filaments / nuclei / membranes, Gaussian / widefield /
  confocal PSF, 20 / 100 / 1000 photons at peak plus read noise, factors 2, 3.3, 4, 6. The
  reference is the object blurred by the isotropic lateral PSF;
- **real stacks** in ``../shared/data``: every k-th plane is kept (k = 3, 4) and the original
  planes are the reference. The original planes keep their own axial PSF, so the output may be
  re-blurred along z by the best Gaussian (sigma 0 to 3 planes) before the PSNR.

Methods: isoapp's (library API, ``fast`` preset, no PSF given, as a new user would), optionally
``METHOD:truepsf`` (phantoms: the true PSF), ``METHOD:fwhm`` (phantoms: a Gaussian with the
true PSF's FWHMs, the blur yardstick's truth), ``METHOD:optics`` (optical phantoms: isoapp's own
optical PSF model from the phantom's nominal NA, wavelengths and immersion) and the peer
``csbdeep`` (CSBDeep's IsotropicCARE in its own venv, see ``peer_setup.sh``; same training budget as IsoNet: steps x batch x patch).

Metric: PSNR after an affine min-MSE fit of the output to the reference on a border-cropped
region, and SSIM (scikit-image) of the fitted output. Gains are over isoapp's ``linear``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/quality.py --quick --threads 1 --out quality-out
    python benchmarks/quality.py --cases 'nuclei-*' --methods linear,isonet,csbdeep --out DIR
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import indep_phantoms as ip  # noqa: E402

log = logging.getLogger("quality")
REPO = Path(__file__).resolve().parents[1]
PEER_VENV = Path(os.environ.get("ISOAPP_PEER_VENV", Path.home() / ".cache/isoapp-bench/csbdeep-venv"))
REBLUR_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
BORDER_XY = 8
ISOAPP_METHODS = ("linear", "cubic", "rl", "isonet", "selfnet", "selfvision", "otcyclegan", "auto")
QUICK_METHODS = ("linear", "cubic", "rl", "isonet", "selfvision", "auto", "csbdeep")

# Real stacks: name -> (file, loader args). All are treated as near-isotropic in their original
# planes (voxel (1, 1, 1)); keeping every k-th plane gives a stack of voxel (k, 1, 1).
REAL = {
    "arabidopsis": ("arabidopsis_embryo_membranes.tif", None),
    "vessels": ("vessels_lightsheet.tif", None),
    "brain_nuclei": ("brain_nuclei_mesospim.tif", None),
    "ovule": ("ovule_membranes.h5", "raw"),
    "tribolium": ("tribolium_lightsheet.tif", "planes[2::3]"),
}


# ----------------------------------------------------------------------------- the matrix
def phantom_matrix(full: bool) -> list[dict]:
    if not full:
        return [dict(kind="phantom", structure=s, psf=p, photons=ph, factor=4.0)
                for s, p in (("filaments", "gauss"), ("nuclei", "widefield"), ("membranes", "confocal"))
                for ph in (20, 100)]
    cases = [dict(kind="phantom", structure=s, psf=p, photons=ph, factor=4.0)
             for s in ip.STRUCTURES for p in ip.PSFS for ph in (20, 100, 1000)]
    cases += [dict(kind="phantom", structure=s, psf="widefield", photons=100, factor=f)
              for s in ip.STRUCTURES for f in (2.0, 3.3, 6.0)]
    return cases


def real_matrix(full: bool) -> list[dict]:
    if not full:
        return [dict(kind="real", stack=s, k=4) for s in ("arabidopsis", "vessels")]
    return [dict(kind="real", stack=s, k=k) for s in REAL for k in (3, 4)]


def case_id(c: dict) -> str:
    if c["kind"] == "phantom":
        return ip.case_name(c["structure"], c["psf"], c["photons"], c["factor"])
    return f"real-{c['stack']}-k{c['k']}"


def load_real(c: dict, data_dir: Path, size: int, max_planes: int) -> dict:
    """Original planes (reference) and every k-th of them (input), laterally centre-cropped."""
    fname, how = REAL[c["stack"]]
    path = data_dir / fname
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (pass --data DIR)")
    if fname.endswith(".h5"):
        import h5py

        with h5py.File(path, "r") as fh:
            full = np.asarray(fh[how], np.float32)
    else:
        import tifffile

        full = np.asarray(tifffile.imread(path), np.float32)
        if how == "planes[2::3]":
            full = full[2::3]
    full = np.squeeze(full)
    if full.ndim != 3:
        raise ValueError(f"{fname}: expected a 3D stack, got shape {full.shape}")
    k = int(c["k"])
    n_in = min((full.shape[0] - 1) // k + 1, max_planes)
    ny, nx = full.shape[1:]
    sy, sx = min(size, ny), min(size, nx)
    y0, x0 = (ny - sy) // 2, (nx - sx) // 2
    ref = full[: (n_in - 1) * k + 1, y0:y0 + sy, x0:x0 + sx]
    return {"acquired": np.ascontiguousarray(ref[::k]), "reference": np.ascontiguousarray(ref), "obj": None,
            "factor": float(k), "voxel_size": (float(k), 1.0, 1.0),
            "params": {"stack": c["stack"], "file": fname, "k": k, "crop_yx": [y0, x0, sy, sx],
                       "reference": "the original planes (their own axial PSF)"}}


def build_case(c: dict, args) -> dict:
    if c["kind"] == "phantom":
        shape = (args.planes, args.size, args.size)
        pc = ip.make_case(c["structure"], c["psf"], c["photons"], c["factor"], shape=shape, seed=args.seed)
        return {"acquired": pc.acquired, "reference": pc.reference, "obj": pc.obj, "factor": pc.factor,
                "voxel_size": pc.voxel_size, "params": pc.params}
    return load_real(c, Path(args.data), args.size, args.real_planes)


# --------------------------------------------------------------------------------- metrics
def crop(vol: np.ndarray, factor: float) -> np.ndarray:
    bz = max(2, int(math.ceil(factor)))
    return vol[bz:vol.shape[0] - bz, BORDER_XY:vol.shape[1] - BORDER_XY, BORDER_XY:vol.shape[2] - BORDER_XY]


def fitted_scores(out: np.ndarray, ref: np.ndarray) -> dict:
    """PSNR and SSIM after the affine min-MSE fit ``a * out + b`` to ``ref`` (both cropped)."""
    from skimage.metrics import structural_similarity

    x = out.astype(np.float64).ravel()
    y = ref.astype(np.float64).ravel()
    xm, ym = x.mean(), y.mean()
    var = np.mean((x - xm) ** 2)
    a = np.mean((x - xm) * (y - ym)) / var if var > 0 else 0.0
    b = ym - a * xm
    fit = (a * out + b).astype(np.float32)
    mse = float(np.mean((fit.astype(np.float64) - ref) ** 2))
    rng = float(ref.max() - ref.min())
    psnr = 10 * math.log10(rng * rng / mse) if mse > 0 else float("inf")
    ssim = float(structural_similarity(ref.astype(np.float32), fit, data_range=rng))
    return {"psnr": psnr, "ssim": ssim}


def score(out: np.ndarray, case: dict, real: bool) -> dict:
    ref = case["reference"]
    n = min(out.shape[0], ref.shape[0])
    if out.shape[0] != ref.shape[0]:
        log.warning("output has %d planes, the reference %d: comparing the first %d", out.shape[0], ref.shape[0], n)
    o, r = crop(out[:n], case["factor"]), crop(ref[:n], case["factor"])
    res = fitted_scores(o, r)
    res["n_planes_out"] = int(out.shape[0])
    if real:  # best over extra axial re-blurs of the output (the reference keeps its own axial PSF)
        best = None
        for s in REBLUR_SIGMAS:
            ob = ndimage.gaussian_filter1d(out[:n], s, axis=0, mode="nearest") if s else out[:n]
            sc = fitted_scores(crop(ob, case["factor"]), r)
            if best is None or sc["psnr"] > best["psnr"]:
                best = {**sc, "sigma": s}
        res.update(psnr_plain=res["psnr"], ssim_plain=res["ssim"], psnr=best["psnr"], ssim=best["ssim"],
                   reblur_sigma=best["sigma"])
    elif case.get("obj") is not None:
        res["psnr_vs_object"] = fitted_scores(o, crop(case["obj"][:n], case["factor"]))["psnr"]
    return res


def linear_check(acquired: np.ndarray, factor: float) -> np.ndarray:
    """Independent linear interpolation to positions k / F (a check on isoapp's grid)."""
    n_out = int(math.floor((acquired.shape[0] - 1) * factor + 1e-9)) + 1
    pos = np.arange(n_out) / factor
    i0 = np.clip(np.floor(pos + 1e-9).astype(int), 0, acquired.shape[0] - 1)
    i1 = np.minimum(i0 + 1, acquired.shape[0] - 1)
    w = (pos - i0)[:, None, None].astype(np.float32)
    return (1 - w) * acquired[i0] + w * acquired[i1]


# --------------------------------------------------------------------------------- methods
def budget(method: str, factor: float, scale: float) -> dict:
    """The fast preset's training settings, with steps scaled by ``scale``."""
    from isoapp.methods import build_config, get_method

    cfg = build_config(method, preset="fast", factor=factor, voxel_size=(factor, 1.0, 1.0))
    if not get_method(method).trainable:
        return {"steps": None}
    tr = cfg.train
    return {"steps": max(10, int(round(tr.steps * scale))), "batch": tr.batch_size, "patch": tr.patch_size}


def run_isoapp(name: str, case: dict, args) -> tuple[np.ndarray, dict]:
    from isoapp.core.volume import Volume
    from isoapp.run.restore import restore

    method, _, variant = name.partition(":")
    vol = Volume(case["acquired"], axes="ZYX", voxel_size=case["voxel_size"], name="stack")
    psf = None
    if variant == "truepsf":
        psf = true_psf_spec(case)
    elif variant == "optics":
        psf = optics_psf_spec(case)
    elif variant == "fwhm":
        psf = fwhm_psf_spec(case)
    kw = {}
    if method != "auto":
        b = budget(method, case["factor"], args.steps_scale)
        kw["steps"] = b["steps"]
    r = restore(vol, method, preset="fast", factor=case["factor"], psf=psf, device="cpu", seed=args.seed, **kw)
    info = {"train_s": r.train_seconds, "restore_s": r.restore_seconds, "steps": r.info.get("steps"),
            "info": json.loads(json.dumps(r.info, default=str))}  # everything restore() reported
    for key in ("heldout", "degradation", "axial", "consistency"):
        if isinstance(r.info.get(key), dict):
            info[key] = info["info"][key]
    return np.asarray(r.volume.data, np.float32), info


def optics_psf_spec(case: dict) -> dict:
    """What a user who knows the objective would give: isoapp's optical model at the phantom's nominal optics."""
    kind = case["params"].get("psf")
    if kind not in ("widefield", "confocal"):
        raise ValueError("a microscope model exists for the widefield and confocal phantoms only")
    o = ip.WIDEFIELD if kind == "widefield" else ip.CONFOCAL
    optics = {"kind": kind, "na": o["na"], "wavelength_um": o["em_wavelength_um"], "refractive_index": o["n_immersion"]}
    if "ex_wavelength_um" in o:
        optics["excitation_wavelength_um"] = o["ex_wavelength_um"]
    return {"kind": "optical", "optics": optics}


def fwhm_psf_spec(case: dict) -> dict:
    """The Gaussian with the true PSF's FWHMs: what a blur estimate exact by the blur yardstick would give."""
    p = case["params"]
    if "psf_widths_px" not in p:
        raise ValueError("the true PSF's FWHMs are known for phantoms only")
    w, dx = p["psf_widths_px"], p["dx_um"]
    return {"kind": "gaussian", "fwhm_um": (w["fwhm_z_px"] * dx, w["fwhm_xy_px"] * dx, w["fwhm_xy_px"] * dx)}


def true_psf_spec(case: dict) -> dict:
    """The phantom's true PSF as a PSFSpec dict (a Gaussian FWHM, or a TIFF of the optical PSF)."""
    p = case["params"]
    if "psf" not in p:
        raise ValueError("the true PSF is known for phantoms only")
    dx = p["dx_um"]
    if p["psf"] == "gauss":
        f = ip.FWHM_PER_SIGMA
        return {"kind": "gaussian", "fwhm_um": (ip.GAUSS["sigma_z_px"] * f * dx, ip.GAUSS["sigma_xy_px"] * f * dx,
                                                ip.GAUSS["sigma_xy_px"] * f * dx)}
    from isoapp.core.volume import Volume
    from isoapp.data.io import write_volume

    path = Path(tempfile.gettempdir()) / f"isoapp-quality-psf-{p['psf']}.tif"
    if not path.exists():
        kernel = ip.optical_psf(p["psf"], (24, 16, 16))
        write_volume(Volume(kernel, axes="ZYX", voxel_size=(dx, dx, dx), name="psf"), path)
    return {"kind": "file", "path": str(path)}


def peer_available() -> bool:
    return (PEER_VENV / "bin/python").exists()


def run_peer(case: dict, args) -> tuple[np.ndarray, dict]:
    """CSBDeep IsotropicCARE in its venv; budget = IsoNet fast's steps x batch x patch."""
    b = budget("isonet", case["factor"], args.steps_scale)
    with tempfile.TemporaryDirectory(prefix="isoapp-quality-peer-") as work:
        inp, outp = Path(work) / "in.npz", Path(work) / "out.npy"
        np.savez(inp, acquired=case["acquired"])
        cmd = [str(PEER_VENV / "bin/python"), str(REPO / "benchmarks/peer_csbdeep.py"), str(inp), str(outp),
               "--factor", str(case["factor"]), "--steps", str(b["steps"]), "--batch", str(b["batch"]),
               "--patch", str(b["patch"]), "--threads", str(args.threads), "--seed", str(args.seed)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": ""}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.peer_timeout)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"peer failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        info["wall_s"] = wall
        info["budget"] = f"matched to isonet fast: {b['steps']} steps x {b['batch']} x {b['patch']}^2 patches"
        return np.load(outp), info


# ----------------------------------------------------------------------------------- report
def fmt(v, plus=False, nd=2):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:+.{nd}f}" if plus else f"{v:.{nd}f}"


def summarise(results: dict, cases: list[str], methods: list[str]) -> str:
    lines = ["# isoapp quality suite", ""]
    meta = results.get("_meta", {})
    lines += [f"- {k}: {v}" for k, v in meta.items()] + [""]
    others = [m for m in methods if m != "linear"]
    for title, key, nd in (("PSNR (dB): linear absolute, others as gain over linear", "psnr", 2),
                           ("SSIM: linear absolute, others as gain over linear", "ssim", 3)):
        lines += [f"## {title}", "", "| case | linear | " + " | ".join(others) + " |",
                  "|---|---|" + "---|" * len(others)]
        for cid in cases:
            row = results.get(cid, {})
            lin = row.get("linear", {}).get(key)
            cells = [fmt(lin, nd=nd)]
            for m in others:
                r = row.get(m, {})
                if "error" in r:
                    cells.append("error")
                elif r.get(key) is None or lin is None:
                    cells.append("n/a")
                else:
                    cells.append(fmt(r[key] - lin, plus=True, nd=nd))
            lines.append(f"| {cid} | " + " | ".join(cells) + " |")
        lines.append("")
    # aggregate gains
    lines += ["## Mean / worst PSNR gain over linear (dB)", "", "| group | " + " | ".join(others) + " |",
              "|---|" + "---|" * len(others)]
    groups = {"noisy phantoms (<= 200 photons)": [c for c in cases if not c.startswith("real")
                                                  and results.get(c, {}).get("_case", {}).get("photons")
                                                  and results[c]["_case"]["photons"] <= 200],
              "all phantoms": [c for c in cases if not c.startswith("real")],
              "real stacks": [c for c in cases if c.startswith("real")]}
    for g, cs in groups.items():
        cells = []
        for m in others:
            gains = [results[c][m]["psnr"] - results[c]["linear"]["psnr"] for c in cs
                     if "psnr" in results.get(c, {}).get(m, {}) and "psnr" in results[c].get("linear", {})]
            cells.append(f"{np.mean(gains):+.2f} / {np.min(gains):+.2f}" if gains else "n/a")
        lines.append(f"| {g} ({len(cs)}) | " + " | ".join(cells) + " |")
    lines.append("")
    # self-reported estimates
    est = []
    for cid in cases:
        for m in methods:
            r = results.get(cid, {}).get(m, {})
            if "heldout_gain_db" in r or "est_axial_sigma_px" in r:
                chosen = r.get("info", {}).get("chosen") or r.get("info", {}).get("selection", {}).get("chosen", "")
                est.append(f"| {cid} | {m}{' -> ' + str(chosen) if chosen else ''} | {fmt(r.get('gain_db'), True)} | "
                           f"{fmt(r.get('heldout_gain_db'), True)} | {r.get('heldout_sign_ok', 'n/a')} | "
                           f"{fmt(r.get('true_axial_sigma_px'))} | {fmt(r.get('est_axial_sigma_px'))} | "
                           f"{fmt(r.get('axial_sigma_rel_err'), True)} | {fmt(r.get('true_noise_gain'), nd=4)} | "
                           f"{fmt(r.get('est_noise_gain'), nd=4)} |")
    if est:
        signs = [results[c][m]["heldout_sign_ok"] for c in cases for m in methods
                 if "heldout_sign_ok" in results.get(c, {}).get(m, {})]
        lines += ["## Self-reported held-out gain and degradation estimate vs the truth", "",
                  f"Held-out gain has the sign of the true gain in {sum(signs)} of {len(signs)} runs. "
                  "Axial sigma: the blur beyond the lateral one, lateral pixels (truth from the PSF's FWHMs; "
                  "real stacks: unknown). Noise gain: shot-noise variance per unit of normalised intensity.", "",
                  "| case | method | true gain (dB) | held-out gain (dB) | same sign | true axial sigma (px) | "
                  "estimated (px) | rel. error | true noise gain | estimated |",
                  "|---|---|---|---|---|---|---|---|---|---|"] + est + [""]
    lines += checks_table(results, cases, methods)
    lines += ["Orthoview PNGs (input | method | reference): `png/<case>__<method>.png`.", ""]
    return "\n".join(lines)


def checks_table(results: dict, cases: list[str], methods: list[str], min_true: float = 0.3) -> list[str]:
    """The axial and the lateral check beside the true gain: per run, then sign agreement and error."""
    rows, stats = [], {"axial": [], "lateral": []}
    for cid in cases:
        for m in methods:
            r = results.get(cid, {}).get(m, {})
            if "gain_db" not in r or m == "linear" or ("axial_gain_db" not in r and "heldout_gain_db" not in r):
                continue
            true = r["gain_db"]
            for k, key in (("axial", "axial_gain_db"), ("lateral", "heldout_gain_db")):
                if key in r:
                    stats[k].append((true, r[key]))
            rows.append(f"| {cid} | {m} | {fmt(true, True)} | {fmt(r.get('axial_gain_db'), True)}"
                        f"{' ± ' + fmt(r['axial_gain_se_db']) if r.get('axial_gain_se_db') else ''} | "
                        f"{fmt(r.get('heldout_gain_db'), True)} | {fmt(r.get('chi2_per_n'))} |")
    if not rows:
        return []
    out = ["## Axial check vs lateral check vs the true gain (dB over linear)", "",
           "| case | method | true gain | axial check | lateral check | chi2/N |", "|---|---|---|---|---|---|"]
    out += rows + [""]
    for k, pairs in stats.items():
        if not pairs:
            continue
        t, e = np.array(pairs).T
        big = np.abs(t) > min_true
        agree = int((np.sign(t[big]) == np.sign(e[big])).sum())
        out.append(f"- {k} check: sign of the true gain in {agree} of {int(big.sum())} runs where |true gain| > "
                   f"{min_true} dB ({int((np.sign(t) == np.sign(e)).sum())} of {len(t)} in all); median |error| "
                   f"{np.median(np.abs(e - t)):.2f} dB")
    from scipy.stats import spearmanr

    for k, key in (("axial", "axial_gain_db"), ("lateral", "heldout_gain_db")):
        rhos = []
        for cid in cases:
            pts = [(r["gain_db"], r[key]) for m in methods  # linear counts: 0 true, 0 checked
                   for r in [results.get(cid, {}).get(m, {})] if "gain_db" in r and key in r]
            if len(pts) >= 3:
                rho = spearmanr(*np.array(pts).T).statistic
                if np.isfinite(rho):
                    rhos.append(float(rho))
        if rhos:
            out.append(f"- {k} check: rank agreement with the truth across methods, mean Spearman "
                       f"{np.mean(rhos):+.2f} over {len(rhos)} cases with 3 or more methods")
    return out + [""]


def derived(row: dict, case: dict, lin: dict | None) -> dict:
    """Gain over linear, and the method's self-reported held-out gain / blur estimate vs truth."""
    out = {}
    if lin and "psnr" in lin and "psnr" in row:
        out["gain_db"] = row["psnr"] - lin["psnr"]
        out["ssim_gain"] = row["ssim"] - lin["ssim"]
    ho = row.get("heldout")
    if isinstance(ho, dict) and ho.get("psnr_gain_db") is not None:
        out["heldout_gain_db"] = float(ho["psnr_gain_db"])
        if "gain_db" in out:
            out["heldout_sign_ok"] = bool(np.sign(out["heldout_gain_db"]) == np.sign(out["gain_db"]))
    ax = row.get("axial")
    if isinstance(ax, dict) and ax.get("psnr_gain_db") is not None:
        out["axial_gain_db"] = float(ax["psnr_gain_db"])
        out["axial_gain_se_db"] = float(ax.get("psnr_gain_se_db") or 0.0)
        if "gain_db" in out:
            out["axial_sign_ok"] = bool(np.sign(out["axial_gain_db"]) == np.sign(out["gain_db"]))
    co = row.get("consistency")
    if isinstance(co, dict) and co.get("chi2_per_n") is not None:
        out["chi2_per_n"] = float(co["chi2_per_n"])
    deg = row.get("degradation")
    true_s = case["params"].get("true_axial_sigma_px")
    if true_s is not None:
        out["true_axial_sigma_px"] = true_s
    if isinstance(deg, dict) and deg.get("axial_sigma_px") is not None:
        out["est_axial_sigma_px"] = float(deg["axial_sigma_px"])
        if true_s:
            out["axial_sigma_rel_err"] = (out["est_axial_sigma_px"] - true_s) / true_s
    true_g = case.get("true_noise_gain")
    if true_g is not None:
        out["true_noise_gain"] = true_g
        if isinstance(deg, dict) and deg.get("noise_gain") is not None:
            out["est_noise_gain"] = float(deg["noise_gain"])
            out["noise_gain_rel_err"] = (out["est_noise_gain"] - true_g) / true_g
    return out


def true_noise_gain(case: dict) -> float | None:
    """The camera's shot-noise variance per unit of intensity as restoration normalises it.

    ADU = offset + g e (e photoelectrons) has variance g (ADU - offset) + g^2 r^2; restoration
    divides by ``s = hi - lo`` of its normalisation percentiles, so the variance of the
    normalised intensity grows by ``g / s`` per unit.
    """
    cam = case["params"].get("camera")
    if not cam:
        return None
    try:
        from isoapp.data.normalize import NORM_PERCENTILES as pct
    except ImportError:  # the constant moved: the historical (1, 99.8)
        pct = (1.0, 99.8)
    lo, hi = np.percentile(case["acquired"], pct)
    return float(cam["gain_adu_per_e"] / (hi - lo))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small matrix (~15 min on 1 core): 6 phantoms + 2 real "
                    "stacks, fast presets with steps x 0.5, methods " + ",".join(QUICK_METHODS))
    ap.add_argument("--cases", default="*", help="comma-separated globs on case names (e.g. 'nuclei-*,real-*')")
    ap.add_argument("--methods", default=None,
                    help="comma-separated: isoapp methods, METHOD:truepsf, METHOD:fwhm, METHOD:optics, csbdeep")
    ap.add_argument("--out", default="quality-out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=str(REPO.parent / "shared/data"), help="folder of the real stacks")
    ap.add_argument("--size", type=int, default=None, help="lateral size (default 96 quick, 128 full)")
    ap.add_argument("--planes", type=int, default=33, help="acquired planes of the phantoms")
    ap.add_argument("--real-planes", type=int, default=33, help="at most this many kept planes of a real stack")
    ap.add_argument("--steps-scale", type=float, default=None, help="scale of every fast preset's steps "
                    "(default 0.5 quick, 1 full)")
    ap.add_argument("--peer-timeout", type=float, default=1800)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="keep results already in OUT/quality.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("isoapp").setLevel(logging.WARNING)
    args.size = args.size or (96 if args.quick else 128)
    args.steps_scale = args.steps_scale if args.steps_scale is not None else (0.5 if args.quick else 1.0)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from isoapp.methods import available_methods
    from isoapp.quality.render import orthoview_png

    avail = set(available_methods())
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:
        base = QUICK_METHODS if args.quick else ISOAPP_METHODS + ("isonet:truepsf", "deconv:optics", "rl:optics", "csbdeep")
        methods = [m for m in base if m.partition(":")[0] in avail or m == "csbdeep"]
    if "csbdeep" in methods and not peer_available():
        log.warning("peer venv %s missing (run benchmarks/peer_setup.sh): skipping csbdeep", PEER_VENV)
        methods.remove("csbdeep")
    unknown = [m for m in methods if m != "csbdeep" and m.partition(":")[0] not in avail]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; available: {sorted(avail)} + csbdeep")
    if "linear" not in methods:
        methods.insert(0, "linear")  # gains are over linear
    specs = phantom_matrix(not args.quick) + real_matrix(not args.quick)
    pats = [p.strip() for p in args.cases.split(",")]
    specs = [c for c in specs if any(fnmatch.fnmatch(case_id(c), p) for p in pats)]
    out = Path(args.out)
    (out / "png").mkdir(parents=True, exist_ok=True)
    jpath = out / "quality.json"
    results = json.loads(jpath.read_text()) if args.resume and jpath.exists() else {}
    results["_meta"] = {"command": " ".join(sys.argv), "threads": args.threads, "steps_scale": args.steps_scale,
                        "size": args.size, "preset": "fast, no PSF given (isonet:truepsf: the true PSF)",
                        "peer": "CSBDeep IsotropicCARE, budget = isonet fast steps x batch x patch; Gaussian PSF "
                                "FWHM 2 z steps along the subsampled axis (no PSF given)",
                        "machine": f"{os.cpu_count()} CPU cores (shared; timings are upper bounds)"}
    t_all = time.perf_counter()
    for c in specs:
        cid = case_id(c)
        log.info("case %s", cid)
        try:
            case = build_case(c, args)
        except Exception as exc:  # a missing real stack must not stop the suite
            log.warning("%s: %s", cid, exc)
            results[cid] = {"_error": str(exc)}
            continue
        real = c["kind"] == "real"
        case["true_noise_gain"] = None if real else true_noise_gain(case)
        row = results.setdefault(cid, {})
        row["_case"] = {**c, "params": case["params"], "shape_in": list(case["acquired"].shape),
                        "shape_ref": list(case["reference"].shape)}
        row["_linear_check"] = score(linear_check(case["acquired"], case["factor"]), case, real)
        for m in methods:
            if m in row and "psnr" in row[m]:
                continue
            if real and m.endswith((":truepsf", ":fwhm", ":optics")):
                continue  # no true PSF or nominal optics for a real stack
            if m.endswith(":optics") and case["params"].get("psf") not in ("widefield", "confocal"):
                continue  # a Gaussian phantom has no optics
            t0 = time.perf_counter()
            try:
                if m == "csbdeep":
                    vol, info = run_peer(case, args)
                else:
                    vol, info = run_isoapp(m, case, args)
            except Exception as exc:
                log.exception("%s / %s failed", cid, m)
                row[m] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            res = {**score(vol, case, real), **info, "wall_s": time.perf_counter() - t0}
            res.update(derived(res, case, row.get("linear")))
            row[m] = res
            log.info("  %-15s PSNR %.2f SSIM %.3f gain %s (%.0f s)", m, res["psnr"], res["ssim"],
                     fmt(res.get("gain_db"), True), res["wall_s"])
            vs = [case["voxel_size"], (case["voxel_size"][0] / case["factor"],) + tuple(case["voxel_size"][1:])]
            orthoview_png(out / "png" / f"{cid}__{m.replace(':', '-')}.png",
                          [("input", case["acquired"]), (m, vol), ("reference", case["reference"])],
                          [vs[0], vs[1], vs[1]])
            tmp = jpath.with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=1, default=float))
            os.replace(tmp, jpath)
    results["_meta"]["wall_s_total"] = time.perf_counter() - t_all
    jpath.write_text(json.dumps(results, indent=1, default=float))
    ids = [case_id(c) for c in specs if case_id(c) in results and "_error" not in results[case_id(c)]]
    md = summarise(results, ids, methods)
    (out / "quality.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
