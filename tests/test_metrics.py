"""Tests of isoapp.quality.metrics, isoapp.quality.fwhm and isoapp.quality.segmentation against scikit-image and known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from isoapp.core.errors import InputError
from isoapp.quality import metrics as M

SIGMA_TO_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _pair(shape, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.random(shape), 1.5)
    yy = np.indices(shape)[-1]
    a = a + 0.3 * (yy > shape[-1] // 2)  # structure: a step edge
    b = a + noise * rng.standard_normal(shape)
    return a, b


SHAPES = [(48, 56), (20, 32, 36)]


# ---------------------------------------------------------------------------- scikit-image parity
@pytest.mark.parametrize("shape", SHAPES)
def test_psnr_ssim_nrmse_match_skimage(shape):
    import skimage.metrics as sk

    a, b = _pair(shape)
    dr = float(a.max() - a.min())
    assert M.psnr(a, b, data_range=dr) == pytest.approx(sk.peak_signal_noise_ratio(a, b, data_range=dr), abs=1e-6)
    assert M.ssim(a, b, data_range=dr) == pytest.approx(sk.structural_similarity(a, b, data_range=dr), abs=1e-4)
    assert M.ssim(a, b, data_range=dr, win_size=5) == pytest.approx(
        sk.structural_similarity(a, b, data_range=dr, win_size=5), abs=1e-4)
    assert M.ssim(a, b, data_range=dr, gaussian=True) == pytest.approx(
        sk.structural_similarity(a, b, data_range=dr, gaussian_weights=True, use_sample_covariance=False),
        abs=1e-4)
    for norm in ("euclidean", "min-max", "mean"):
        assert M.nrmse(a, b, norm) == pytest.approx(sk.normalized_root_mse(a, b, normalization=norm), rel=1e-9)


def test_ssim_float32_matches_skimage():
    import skimage.metrics as sk

    a, b = _pair((16, 40, 40), seed=3, noise=0.2)
    a, b = a.astype(np.float32), b.astype(np.float32)
    assert M.ssim(a, b, data_range=1.0) == pytest.approx(sk.structural_similarity(a, b, data_range=1.0), abs=1e-4)


def test_data_range_default_is_reference_range_without_normalisation():
    a, b = _pair((32, 32))
    assert M.psnr(a, b) == pytest.approx(M.psnr(a, b, data_range=float(a.max() - a.min())))


# ---------------------------------------------------------------------------- identities
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("normalize", ["none", "percentile", "minmse"])
def test_identical_inputs(shape, normalize):
    a, _ = _pair(shape)
    a = 100.0 * a + 7.0
    assert M.psnr(a, a, normalize=normalize) == math.inf
    assert M.ssim(a, a, normalize=normalize) == pytest.approx(1.0, abs=1e-12)
    assert M.ms_ssim(a, a, normalize=normalize) == pytest.approx(1.0, abs=1e-12)
    res = M.compute_metrics(a, a.copy(), normalize=normalize)
    assert res["psnr"] == math.inf and res["nrmse"] == 0.0
    assert res["ssim"] == pytest.approx(1.0, abs=1e-12) and res["ms_ssim"] == pytest.approx(1.0, abs=1e-12)


def test_minmse_is_invariant_to_affine_intensity_changes():
    a, b = _pair((24, 32, 32))
    base = M.compute_metrics(a, b)
    scaled = M.compute_metrics(a, 250.0 * b - 40.0)
    for k in ("psnr", "ssim", "ms_ssim", "nrmse"):
        assert scaled[k] == pytest.approx(base[k], rel=1e-9)
    # without normalisation the scale change is punished
    assert M.psnr(a, 250.0 * b - 40.0) < base["psnr"] - 20


def test_normalize_percentile_and_minmse():
    rng = np.random.default_rng(1)
    x = rng.random(10_000) * 50 + 10
    n = M.normalize_percentile(x, 2, 99.8)
    assert np.percentile(n, 2) == pytest.approx(0.0, abs=1e-9)
    assert np.percentile(n, 99.8) == pytest.approx(1.0, abs=1e-9)
    assert M.normalize_percentile(x, clip=True).min() == 0.0 and M.normalize_percentile(x, clip=True).max() == 1.0
    t = rng.random(1000)
    fitted = M.normalize_minmse(3.0 * t + 5.0, t)
    np.testing.assert_allclose(fitted, t, atol=1e-12)
    # least squares: no other affine map does better
    x2 = t + 0.1 * rng.standard_normal(t.size)
    best = np.mean((M.normalize_minmse(x2, t) - t) ** 2)
    for alpha, beta in [(1.0, 0.0), (0.9, 0.05), (1.1, -0.05)]:
        assert best <= np.mean((alpha * x2 + beta - t) ** 2)
    assert np.allclose(M.normalize_minmse(np.ones(5), np.arange(5.0)), 2.0)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(InputError, match=r"\(4, 5\).*\(4, 6\)"):
        M.psnr(np.zeros((4, 5)), np.zeros((4, 6)))
    with pytest.raises(InputError, match="smaller than the SSIM window"):
        M.ssim(np.zeros((5, 40)), np.zeros((5, 40)), data_range=1)


# ---------------------------------------------------------------------------- monotonic and MS-SSIM
@pytest.mark.parametrize("shape", [(64, 64), (32, 48, 48)])
def test_more_blur_gives_worse_scores(shape):
    rng = np.random.default_rng(2)
    ref = ndimage.gaussian_filter(rng.random(shape), 1.0)
    res = [M.compute_metrics(ref, ndimage.gaussian_filter(ref, s)) for s in (0.5, 1.0, 2.0, 4.0)]
    for k in ("psnr", "ssim", "ms_ssim"):
        vals = [r[k] for r in res]
        assert all(x > y for x, y in zip(vals, vals[1:], strict=False)), (k, vals)
    nr = [r["nrmse"] for r in res]
    assert all(x < y for x, y in zip(nr, nr[1:], strict=False))


def test_ms_ssim_scales_reduce_for_small_images():
    a, b = _pair((12, 12), noise=0.1)
    # 12 // 2 < 7: one scale only, i.e. plain SSIM
    assert M.ms_ssim(a, b, data_range=1.0) == pytest.approx(M.ssim(a, b, data_range=1.0), abs=1e-12)
    assert M._ms_scales((16, 40, 40), 7, 5) == 2
    assert M._ms_scales((256, 256), 7, 5) == 5
    a, b = _pair((128, 128), noise=0.1)
    v = M.ms_ssim(a, b, data_range=1.0)
    assert 0 < v < 1
    a3, b3 = _pair((16, 48, 48), noise=0.1)
    per = M.ms_ssim(a3, b3, data_range=1.0, per_plane=True)
    assert per == pytest.approx(np.mean([M.ms_ssim(a3[k], b3[k], data_range=1.0) for k in range(16)]))


def test_per_plane_and_plane_metrics():
    a, b = _pair((10, 24, 28), noise=0.1)
    vals = M.per_plane(M.psnr, a, b, axis=1, data_range=1.0)
    assert vals.shape == (24,)
    assert vals[3] == pytest.approx(M.psnr(a[:, 3], b[:, 3], data_range=1.0))
    pm = M.plane_metrics(a, b, normalize="none", data_range=1.0)
    assert set(pm) == {f"{m}_{p}" for m in ("psnr", "ssim") for p in ("xy", "xz", "yz")}
    assert pm["ssim_xy"] == pytest.approx(np.mean([M.ssim(a[k], b[k], data_range=1.0) for k in range(10)]))
    # XZ planes are 10 x 28: window 7 still fits
    assert pm["ssim_xz"] == pytest.approx(np.mean([M.ssim(a[:, k], b[:, k], data_range=1.0) for k in range(24)]))
    full = M.compute_metrics(a, b, per_plane=True)
    assert "ssim_yz" in full and full["psnr_xy"] > 0


# ---------------------------------------------------------------------------- FWHM
@pytest.mark.parametrize("sigma,centre,offset", [(2.0, 20.3, 0.0), (3.7, 24.8, 5.0), (1.1, 15.5, -2.0)])
def test_fwhm_profile_of_known_gaussian(sigma, centre, offset):
    x = np.arange(48)
    prof = 3.0 * np.exp(-0.5 * ((x - centre) / sigma) ** 2) + offset
    assert M.fwhm_profile(prof, spacing=0.2) == pytest.approx(SIGMA_TO_FWHM * sigma * 0.2, rel=0.02)
    noisy = prof + 0.01 * np.random.default_rng(0).standard_normal(x.size)
    assert M.fwhm_profile(noisy) == pytest.approx(SIGMA_TO_FWHM * sigma, rel=0.02)
    assert math.isnan(M.fwhm_profile(np.zeros(20)))


def test_bead_fwhm_anisotropic_beads():
    shape = (56, 48, 48)
    z, y, x = np.indices(shape, dtype=np.float64)
    sz, sxy = 3.0, 1.2
    centres = [(18.3, 14.6, 13.2), (36.7, 32.1, 33.8), (20.2, 36.4, 12.9), (2.0, 24.0, 24.0)]  # last at border
    vol = np.full(shape, 10.0)
    for cz, cy, cx in centres:
        vol += 100 * np.exp(-0.5 * (((z - cz) / sz) ** 2 + ((y - cy) / sxy) ** 2 + ((x - cx) / sxy) ** 2))
    vol += 0.5 * np.random.default_rng(0).standard_normal(shape)
    vs = (0.5, 0.1, 0.1)
    res = M.bead_fwhm(vol, voxel_size=vs)
    assert res["n"] == 3
    assert res["fwhm_z"] == pytest.approx(SIGMA_TO_FWHM * sz * 0.5, rel=0.02)
    assert res["fwhm_axial"] == res["fwhm_z"]
    assert res["fwhm_y"] == pytest.approx(SIGMA_TO_FWHM * sxy * 0.1, rel=0.02)
    assert res["fwhm_x"] == pytest.approx(SIGMA_TO_FWHM * sxy * 0.1, rel=0.02)
    assert res["fwhm_lateral"] == pytest.approx(SIGMA_TO_FWHM * sxy * 0.1, rel=0.02)
    found = np.array(sorted(res["centres"]))
    np.testing.assert_allclose(found, np.array(sorted(centres[:3])), atol=0.1)
    # given centres (fractional), one overlapping pair is skipped
    res2 = M.bead_fwhm(vol, centres=[centres[0], centres[1], (19.0, 15.0, 16.0)], voxel_size=vs, box=(9, 5, 5))
    assert res2["n"] == 1
    assert res2["fwhm_z"] == pytest.approx(SIGMA_TO_FWHM * sz * 0.5, rel=0.02)


def _tubes(shape=(40, 56, 56)):
    raw = np.zeros(shape)
    raw[12, 18, :] = 1
    raw[26, :, 38] = 1
    for t in np.arange(0, 80, 0.25):
        yy, xx = 4 + 0.6 * t, 4 + 0.55 * t
        if yy < shape[1] - 1 and xx < shape[2] - 1:
            raw[20, int(round(yy)), int(round(xx))] = 1
    return raw


def test_line_fwhm_and_tube_mismatch():
    raw = _tubes()
    gt = ndimage.gaussian_filter(raw, 1.5)
    assert M.line_fwhm(gt, (12, 18, 30), (1, 0, 0)) == pytest.approx(SIGMA_TO_FWHM * 1.5, rel=0.02)
    assert M.line_fwhm(gt, (12, 18, 30), (0, 1, 0), voxel_size=(0.2, 0.2, 0.2)) == pytest.approx(
        SIGMA_TO_FWHM * 1.5 * 0.2, rel=0.02)
    assert M.tube_fwhm_mismatch(gt, gt) == 0.0
    iso = M.tube_fwhm_mismatch(ndimage.gaussian_filter(raw, 2.0), gt)
    zblur = M.tube_fwhm_mismatch(ndimage.gaussian_filter(raw, (3.5, 1.5, 1.5)), gt)
    assert iso < 0.05
    assert zblur == pytest.approx(3.5 / 1.5 - 1.0, rel=0.1)
    w = M.tube_widths(ndimage.gaussian_filter(raw, (3.5, 1.5, 1.5)), gt)
    assert w["n"] > 20
    assert w["lateral"] == pytest.approx(SIGMA_TO_FWHM * 1.5, rel=0.05)
    assert w["axial"] == pytest.approx(SIGMA_TO_FWHM * 3.5, rel=0.05)


# ---------------------------------------------------------------------------- Fourier
def test_fourier_isotropy_separates_isotropic_from_z_blurred():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((48, 48, 48))
    iso = M.fourier_isotropy(ndimage.gaussian_filter(v, 1.0))
    aniso = M.fourier_isotropy(ndimage.gaussian_filter(v, (3.0, 1.0, 1.0)))
    assert 0.9 < iso["ratio_z"] < 1.1
    assert aniso["ratio_z"] < 0.5
    assert aniso["ky"] == pytest.approx(iso["ky"], rel=0.1)
    # with a noise floor the z-blurred volume is still far from isotropic
    noisy = ndimage.gaussian_filter(v, (3.0, 1.0, 1.0)) + 0.02 * rng.standard_normal(v.shape)
    assert M.fourier_isotropy(noisy)["ratio_z"] < 0.5
    # physical units: a 2x coarser z voxel halves the frequency scale
    kz1 = M.fourier_cutoff(ndimage.gaussian_filter(v, 1.0), (1.0, 1.0, 1.0), axis=0)
    kz2 = M.fourier_cutoff(ndimage.gaussian_filter(v, 1.0), (2.0, 1.0, 1.0), axis=0)
    assert kz2 == pytest.approx(kz1 / 2, rel=1e-9)
    # a cut-off beyond Nyquist is reported as Nyquist
    assert M.fourier_cutoff(v, (1.0, 1.0, 1.0), axis=2) == pytest.approx(0.5, abs=0.02)


# ---------------------------------------------------------------------------- SEG
def test_seg_score_known_values():
    gt = np.zeros((20, 20), int)
    gt[2:6, 2:6] = 1  # 16 px
    gt[10:14, 10:18] = 2  # 32 px
    assert M.seg_score(gt, gt) == 1.0
    # relabelled prediction: label ids do not matter
    assert M.seg_score(gt, np.where(gt > 0, 3 - gt, 0) * 7) == 1.0
    # exactly half of each object: not a match (needs > 0.5)
    half = np.zeros_like(gt)
    half[2:6, 2:4] = 1
    half[10:14, 10:14] = 2
    assert M.seg_score(gt, half) == 0.0
    # object 2 shifted by 2 columns: |R∩S| = 24 > 16, |R∪S| = 40 -> 0.6; object 1 missing -> 0
    shifted = np.zeros_like(gt)
    shifted[10:14, 12:20] = 5
    assert M.seg_score(gt, shifted) == pytest.approx(0.6 / 2)
    # a false-positive prediction does not change SEG
    fp = gt.copy()
    fp[17:19, 0:3] = 9
    assert M.seg_score(gt, fp) == 1.0
    # a prediction merging both objects matches each of them (the rule is per GT object),
    # with the union of the merged object: (16/48 + 32/48) / 2
    merged = (gt > 0).astype(int)
    assert M.seg_score(gt, merged) == pytest.approx(0.5)
    assert math.isnan(M.seg_score(np.zeros((4, 4), int), gt[:4, :4]))


def test_otsu_is_skimage():
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(10, 2, 5000), rng.normal(30, 4, 3000)])
    assert M.otsu_threshold(x) == threshold_otsu(x)


def test_ssim_maps_product_is_skimage_ssim_map():
    """MS-SSIM's own luminance x contrast-structure maps reproduce scikit-image's SSIM map."""
    from skimage.metrics import structural_similarity

    a, b = _pair((20, 32, 36), seed=4, noise=0.1)
    lum, cs = M._ssim_maps(a, b, 1.0, 7)
    _, full = structural_similarity(a, b, data_range=1.0, win_size=7, full=True)
    np.testing.assert_allclose(lum * cs, full[3:-3, 3:-3, 3:-3], atol=1e-9)


def test_no_import_cycle_between_fwhm_metrics_and_segmentation():
    import ast
    import inspect

    from isoapp.quality import fwhm, segmentation

    for mod, banned in ((fwhm, {"metrics"}), (segmentation, {"metrics", "fwhm"})):
        tree = ast.parse(inspect.getsource(mod))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & banned, (mod.__name__, imported)


def test_segment_splits_touching_nuclei():
    shape = (36, 48, 56)
    z, y, x = np.indices(shape)
    gt = np.zeros(shape, int)
    for k, (c, r) in enumerate([((18, 16, 14), 7), ((18, 16, 26), 7), ((18, 34, 40), 6), ((8, 38, 10), 4)], 1):
        m = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r
        gt[m & (gt == 0)] = k
    rng = np.random.default_rng(0)
    vol = (gt > 0) * 100.0 + 10 + 5 * rng.standard_normal(shape)
    lab = M.segment(vol)
    assert lab.dtype == np.int32 and lab.max() == 4
    assert M.seg_score(gt, lab) > 0.9
    unsplit = M.segment(vol, split=False)
    assert unsplit.max() == 3
    assert M.seg_score(gt, unsplit) < M.seg_score(gt, lab)
    assert M.segment(vol, min_size=400).max() == 3  # the small nucleus is dropped
    assert M.segment(np.zeros((8, 8, 8)) + 1.0, threshold=5.0).max() == 0


def test_watershed_split_is_better_than_no_split_on_nuclei_phantom():
    """On the bench's nuclei phantom the split labels score close to the labels themselves."""
    from isoapp.quality.phantoms import make_phantom

    ph = make_phantom("nuclei", (17, 96, 96), factor=4.0, seed=0)
    labels = ph.params["labels"]
    split = M.seg_score(labels, M.segment(ph.gt.data))
    merged = M.seg_score(labels, M.segment(ph.gt.data, split=False))
    assert split > 0.85 and split > merged
