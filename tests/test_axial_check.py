"""The axial check scores restorations against withheld *recorded* planes, so a wrong model cannot fool it.

Unit part: on an independent phantom (benchmarks/indep_phantoms.py, not isoapp's own generator or
forward model), a restoration that is the truth beats interpolation at the withheld planes, and
deliberately broken ones (over-sharpened along z, shifted by one acquired plane) fall below it.

End to end (slow): the user states a PSF far too wide. IsoNet then over-deconvolves and loses to
linear interpolation against the truth; the lateral check, which degrades its planes with the same
wrong PSF, reports a gain; the axial check has the sign of the true gain.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from isoapp.core.errors import ConfigError
from isoapp.quality.axial import axial_check, axial_text, axial_unavailable, split_planes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import indep_phantoms as ip  # noqa: E402

F = 3.0


@pytest.fixture(scope="module")
def case():
    return ip.make_case("nuclei", "gauss", 100, F, shape=(17, 48, 48), seed=1)


def test_planes_split_into_kept_and_withheld_and_thin_stacks_get_one_line():
    kept, held = split_planes(10)  # the last odd plane has no kept plane beyond it: dropped
    assert kept.tolist() == [0, 2, 4, 6, 8] and held.tolist() == [1, 3, 5, 7]
    assert axial_unavailable(7) is None  # the 7-plane stack keeps 4 planes: enough
    why = axial_unavailable(6)
    assert why and "6 planes" in why and "\n" not in why
    assert axial_check(np.zeros((6, 16, 16), np.float32), F, lambda t, f: t) == {"skipped": why}
    assert axial_text({"skipped": why}) == why


# Measured (seeds 0 / 1 / 2 of this phantom, PSNR gain over linear at the withheld planes): the truth
# +2.33 / +2.32 / +2.16 dB; over-sharpened along z -1.15 / -1.00 / -0.24; shifted by one acquired
# plane -1.87 / -2.54 / -1.34. Seed 1 is used; the bars sit about 0.7 dB from each side.
def test_the_truth_beats_interpolation_and_broken_restorations_fail(case):
    ref = case.reference.astype(np.float32)
    good = axial_check(case.acquired, F, lambda thin, f2: ref)
    assert good["n_planes"] == 8 and good["spacing_ratio"] == 2
    assert good["psnr_gain_db"] > 1.5 and good["cubic_margin_db"] > 1.5, good
    assert good["psnr_gain_db"] > 3 * good["psnr_gain_se_db"]
    assert good["ssim_gain"] > 0
    over = ref + 2.0 * (ref - ndimage.gaussian_filter1d(ref, 2 * F, axis=0))  # ringing along z
    bad = axial_check(case.acquired, F, lambda thin, f2: over)
    assert bad["psnr_gain_db"] < -0.3, bad
    shifted = axial_check(case.acquired, F, lambda thin, f2: np.roll(ref, int(F), axis=0))
    assert shifted["psnr_gain_db"] < -1.0, shifted
    assert "withheld recorded planes at 2× the spacing" in axial_text(good)


def test_the_thinned_restoration_must_have_the_grid_of_twice_the_factor(case):
    with pytest.raises(ValueError, match="planes"):
        axial_check(case.acquired, F, lambda thin, f2: case.reference[:-1])


def test_an_unknown_check_is_refused_in_one_line():
    from isoapp.run.restorer import Restorer

    with pytest.raises(ConfigError, match="use one of"):
        Restorer("linear", check="everything")


# Measured on this phantom (17 x 48 x 48, F 3, 100 photons, IsoNet fast with 100 steps, the user's PSF
# FWHM_z 3x the true one), seeds 0 / 1 / 2: true gain -1.67 / -1.99 / -1.05 dB over linear; lateral
# check +2.57 / +1.79 / +2.15 dB (fooled every time: the wrong PSF degrades its planes too); axial check
# -0.19 / -0.59 / +0.39 dB (SE 0.49 / 0.21 / 0.14): the right sign in 2 of 3, wrong (but 2 dB less
# optimistic) at seed 2; data consistency chi2/N 2.26 / 1.94 / 2.38 flags all three (true PSF: 0.80).
# With the PSF 2x too wide (seed 0) the true gain stays positive (+1.57 dB): the lateral check
# overstates it (+3.07) and the axial check has its sign (+0.87). With the true PSF: true +4.22,
# lateral +1.69, axial +1.59 dB. Seed 1 is used (axial margin 0.59 dB, 2.8 SE).
@pytest.mark.slow
def test_a_psf_too_wide_fools_the_lateral_check_but_not_the_axial_one(case):
    from isoapp.core.volume import Volume
    from isoapp.quality.metrics import normalize_minmse, psnr
    from isoapp.run.restore import restore

    f = ip.FWHM_PER_SIGMA
    dx = case.params["dx_um"]
    wrong = {"kind": "gaussian", "fwhm_um": (3 * ip.GAUSS["sigma_z_px"] * f * dx, ip.GAUSS["sigma_xy_px"] * f * dx,
                                             ip.GAUSS["sigma_xy_px"] * f * dx)}
    vol = Volume(case.acquired, axes="ZYX", voxel_size=case.voxel_size, name="phantom")
    res = restore(vol, "isonet", factor=F, psf=wrong, steps=100, device="cpu", check="both")
    lin = restore(vol, "linear", factor=F, device="cpu", check="none").volume.data
    gt = case.reference
    sl = (slice(3, -3), slice(8, -8), slice(8, -8))

    def score(v):
        return psnr(gt[sl], normalize_minmse(v[sl], gt[sl]), data_range=float(gt[sl].max() - gt[sl].min()))

    true_gain = score(res.volume.data) - score(lin)
    lateral, axial = res.info["heldout"]["psnr_gain_db"], res.info["axial"]["psnr_gain_db"]
    assert true_gain < -0.5, true_gain
    assert lateral > 0.5, res.info["heldout"]  # fooled: the wrong PSF made its planes
    assert axial < 0, res.info["axial"]  # the sign of the true gain
    assert res.info["consistency"]["chi2_per_n"] > 1.3, res.info["consistency"]


def _fake_axial(gains: dict[str, tuple[float, float, float]]):
    """An axial check that reports ``gains[name] = (gain over linear, its SE, margin over cubic)``."""

    def check(vol, factor, name, **kw):
        g, se, margin = gains[name]
        return {"psnr_gain_db": g, "psnr_gain_se_db": se, "cubic_margin_db": margin, "cubic_margin_se_db": se,
                "spacing_ratio": 2, "n_planes": 8}

    return check


def test_auto_chooses_by_the_axial_check_where_it_runs_else_by_the_lateral_one(monkeypatch):
    """The lateral check rates linear interpolation 0 dB over itself; an axial check that rates it
    clearly above both interpolations makes auto keep it, one within twice its SE does not, and with
    criterion=lateral (or where the axial check cannot run) the lateral check decides."""
    import isoapp.methods.auto as auto_mod
    from isoapp.quality.phantoms import make_phantom
    from isoapp.run.restore import restore

    ph = make_phantom("tubes", (49, 48, 48), factor=4, seed=0, noise={"photons": 200.0, "read_noise": 1.0})
    monkeypatch.setattr(auto_mod, "thin_restorer", lambda name, *a, **k: name)
    cands = {"candidates": ["linear"]}
    monkeypatch.setattr(auto_mod, "axial_check", _fake_axial({"linear": (0.8, 0.1, 0.5)}))
    res = restore(ph.degraded, "auto", device="cpu", params=cands, check="both")
    trial = res.info["candidates"][0]
    assert trial["judged_by"] == "axial" and trial["axial_gain_db"] == 0.8 and trial["heldout_gain_db"] == 0.0
    assert res.info["chosen"] == "linear" and "withheld recorded planes" in res.info["reason"], res.info["reason"]
    assert res.info["axial"]["psnr_gain_db"] == 0.8  # the Restorer reports the chosen candidate's, not a third run
    monkeypatch.setattr(auto_mod, "axial_check", _fake_axial({"linear": (0.8, 0.5, 0.5)}))  # within 2 SE
    res = restore(ph.degraded, "auto", device="cpu", params=cands, check="lateral")
    assert res.info["chosen"] == "cubic" and "clearly beat both" in res.info["reason"]
    res = restore(ph.degraded, "auto", device="cpu", params={**cands, "criterion": "lateral"}, check="lateral")
    trial = res.info["candidates"][0]
    assert trial["judged_by"] == "lateral" and "axial_gain_db" not in trial
    assert res.info["chosen"] == "cubic" and "lateral check" in res.info["reason"]

    lateral = {"psnr_gain_db": 3.0, "psnr_gain_se_db": 0.1, "cubic_margin_db": 3.0, "cubic_margin_se_db": 0.1,
               "ssim_gain": 0.05, "cubic_gain_db": 0.0}
    monkeypatch.setattr(auto_mod, "evaluate", lambda *a, **k: dict(lateral))  # the lateral check clears the bar
    monkeypatch.setattr(auto_mod, "axial_check", _fake_axial({"linear": (-0.2, 0.4, -0.2)}))  # within the noise
    res = restore(ph.degraded, "auto", device="cpu", params=cands, check="lateral")
    assert res.info["chosen"] == "linear" and "do not contradict" in res.info["reason"], res.info["reason"]
    monkeypatch.setattr(auto_mod, "axial_check", _fake_axial({"linear": (-1.0, 0.2, -1.0)}))  # clearly worse: veto
    res = restore(ph.degraded, "auto", device="cpu", params=cands, check="lateral")
    assert res.info["chosen"] == "cubic", res.info["reason"]
    monkeypatch.undo()
    monkeypatch.setattr(auto_mod, "thin_restorer", lambda name, *a, **k: name)

    def refuse(*a, **k):
        raise ConfigError("twice the factor is too large")

    monkeypatch.setattr(auto_mod, "axial_check", refuse)  # the sub-run refused: the lateral check decides
    res = restore(ph.degraded, "auto", device="cpu", params=cands, check="lateral")
    assert res.info["candidates"][0]["judged_by"] == "lateral" and res.info["chosen"] == "cubic"


def test_a_large_stack_is_checked_on_a_bounded_window(case, monkeypatch):
    """The check's memory does not grow with the stack: it scores the most signal-rich window of a
    budget (here shrunk so that the 48 x 48 phantom exceeds it) and says which."""
    import isoapp.quality.axial as axial
    from isoapp.data.io.lazy import training_region

    budget = 4 * 17 * 32 * 32 * 4  # F x planes x a 32 x 32 window, float32: below the 48 x 48 stack
    monkeypatch.setattr(axial, "CHECK_OUTPUT_BYTES", budget)
    seen = []
    ref = case.reference.astype(np.float32)
    _, wy, wx = training_region(case.acquired, int(budget / F), min_lateral=32)

    def restore_thin(thin, f2):
        seen.append(thin.shape)
        return ref[:, wy, wx]

    res = axial_check(case.acquired, F, restore_thin)
    assert seen and seen[0][1] * seen[0][2] * F * 17 * 4 <= budget and seen[0][1:] != case.acquired.shape[1:]
    assert res["window_yx"] == [wy.start, wy.stop, wx.start, wx.stop]
    assert res["psnr_gain_db"] > 1.0, res  # the truth still wins there: measured +1.94 / +2.28 / +2.13 (seeds 0-2)
    with pytest.raises(ValueError, match="shape"):  # a restoration of the whole stack is not the window's
        axial_check(case.acquired, F, lambda thin, f2: ref)
