"""The peer in the quality suite: CSBDeep's IsotropicCARE on one stack.

Runs INSIDE the peer venv made by ``benchmarks/peer_setup.sh`` (csbdeep + tensorflow-cpu; no
isoapp, no torch); ``benchmarks/quality.py`` calls it as a subprocess::

    ~/.cache/isoapp-bench/csbdeep-venv/bin/python benchmarks/peer_csbdeep.py IN.npz OUT.npy \\
        --factor 4 --steps 300 --batch 8 --patch 64 --psf-fwhm-px 8 --threads 1

``IN.npz`` holds ``acquired`` (Z, Y, X); ``OUT.npy`` receives the restored stack on isoapp's
grid (plane ``k`` at input position ``k / F``, ``floor((Z - 1) F) + 1`` planes); a JSON line
with timings is printed last.

It follows CSBDeep's isotropic-reconstruction example notebooks (1_datagen, 2_training,
3_prediction):

- training data: ``RawData.from_arrays`` of the stack itself, ``anisotropic_distortions``
  (PSF convolution, subsampling along X by ``factor``, linear upsampling back) and
  ``create_patches`` with patch size ``(1, P, P)``, whose singleton Z is then dropped, exactly
  as the notebook does; ``save_training_data`` / ``load_training_data`` with a 10 % validation
  split;
- the model: ``Config(axes, 1, 1, ...)`` with CSBDeep's default U-Net and loss, trained for
  ``steps`` steps of ``batch`` patches (``train_steps_per_epoch * train_epochs``);
- prediction: ``IsotropicCARE.predict`` (percentile normalisation, the network on the XZ and YZ
  slices, geometric mean). CSBDeep upsamples z itself with ``scipy.ndimage.zoom(order=1)`` on its
  own corner-aligned grid; to land on isoapp's grid (and for non-integer factors) we upsample
  linearly to positions ``k / F`` here and call ``predict`` with ``factor=1``: the same linear
  upsampling, on the right grid.

The PSF: with no PSF given, a user gives CSBDeep a Gaussian; we use the same assumption as
isoapp's historical ``auto`` PSF (axial FWHM = two z steps = ``2 F`` lateral pixels), as a 1D
Gaussian along the subsampled axis (``psf_axes='YX'``, shape ``(1, K)``); ``--psf-fwhm-px``
changes it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time


def upsample_linear(x, factor: float):
    """Linear interpolation along z to positions ``k / factor`` (isoapp's restore grid)."""
    import numpy as np

    n_out = int(math.floor((x.shape[0] - 1) * factor + 1e-9)) + 1
    pos = np.arange(n_out) / factor
    i0 = np.clip(np.floor(pos + 1e-9).astype(int), 0, x.shape[0] - 1)
    i1 = np.minimum(i0 + 1, x.shape[0] - 1)
    w = np.clip(pos - i0, 0, 1).astype(np.float32)[:, None, None]
    return ((1 - w) * x[i0] + w * x[i1]).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--factor", type=float, required=True)
    ap.add_argument("--steps", type=int, required=True, help="training steps (batches)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--n-patches", type=int, default=512, help="patches drawn from the stack (the notebook's 512)")
    ap.add_argument("--psf-fwhm-px", type=float, default=None, help="Gaussian FWHM along the subsampled axis "
                    "(lateral pixels); default 2 * factor")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(a.seed)
    from csbdeep.data import RawData, create_patches
    from csbdeep.data.transform import anisotropic_distortions
    from csbdeep.io import load_training_data, save_training_data
    from csbdeep.models import Config, IsotropicCARE
    from csbdeep.utils import axes_dict

    x = np.load(a.inp)["acquired"].astype(np.float32)
    t0 = time.perf_counter()
    fwhm = a.psf_fwhm_px if a.psf_fwhm_px else 2.0 * a.factor
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    h = max(1, int(math.ceil(3 * sigma)))
    g = np.exp(-np.arange(-h, h + 1) ** 2 / (2 * sigma * sigma))
    psf = (g / g.sum())[None, :].astype(np.float32)  # (Y=1, X=K)

    patch = min(a.patch, (min(x.shape[1:]) // 4) * 4)
    with tempfile.TemporaryDirectory(prefix="isoapp-peer-") as work:
        raw = RawData.from_arrays(x[None], x[None], axes="ZYX")
        transform = anisotropic_distortions(subsample=a.factor, psf=psf, psf_axes="YX", subsample_axis="X")
        X, Y, XY_axes = create_patches(raw_data=raw, patch_size=(1, patch, patch), n_patches_per_image=a.n_patches,
                                       transforms=[transform], verbose=False)
        z = axes_dict(XY_axes)["Z"]
        X, Y = np.take(X, 0, axis=z), np.take(Y, 0, axis=z)
        XY_axes = XY_axes.replace("Z", "")
        npz = os.path.join(work, "train.npz")
        save_training_data(npz, X, Y, XY_axes)
        (X, Y), (X_val, Y_val), axes = load_training_data(npz, validation_split=0.1, verbose=False)
        spe = max(1, min(a.steps, 50))
        epochs = max(1, int(math.ceil(a.steps / spe)))
        config = Config(axes, 1, 1, train_steps_per_epoch=spe, train_epochs=epochs, train_batch_size=a.batch)
        model = IsotropicCARE(config, "peer", basedir=work)
        t_data = time.perf_counter() - t0
        t1 = time.perf_counter()
        model.train(X, Y, validation_data=(X_val, Y_val))
        t_train = time.perf_counter() - t1
        t2 = time.perf_counter()
        up = upsample_linear(x, a.factor)
        restored = model.predict(up, "ZYX", factor=1)
        t_pred = time.perf_counter() - t2
    np.save(a.out, restored.astype(np.float32))
    print(json.dumps({"data_s": t_data, "train_s": t_train, "restore_s": t_pred, "steps": spe * epochs,
                      "batch": a.batch, "patch": patch, "psf_fwhm_px": fwhm, "n_patches": a.n_patches,
                      "csbdeep_config": {"unet_n_depth": config.unet_n_depth, "unet_n_first": config.unet_n_first,
                                         "unet_kern_size": config.unet_kern_size, "train_loss": config.train_loss}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
