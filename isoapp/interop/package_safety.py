"""Open a bioimage.io model package without letting it act on the machine.

A TorchScript file is a program: loading and running it can read and write any file the user can.
So ``isoapp restore --model NAME.zip`` (:func:`open_package`) never loads a package's TorchScript
by default. For a package written by ``isoapp export`` it rebuilds the network itself, from the
method and parameters in the package's ``training.json`` (validated, bounded and checked against
the ``rdf.yaml``), and loads the package's state-dict weights with ``torch.load(weights_only=True)``,
which only reads tensors. The TorchScript stays in the package for deepImageJ and other consumers.

A package whose only weights are TorchScript, or whose network isoapp cannot rebuild (another
architecture), is refused in one line unless the user trusts it: ``--trust-torchscript`` on the
command line, ``trust_torchscript=True`` in the library. Trusted TorchScript runs in a child
process (:mod:`isoapp.interop.torchscript_sandbox`) that SIGINT and SIGTERM end at once.

Everything is read from the zip itself (:mod:`isoapp.data.io.safe_load`): the YAML and JSON with size
limits and no aliases, every ``source`` checked to be a file inside the package before anything is
read, every file read checked against its sha256 in ``rdf.yaml``. Nothing is fetched from the
network or cached (bioimageio.spec's loader is not used here).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import ModelError
from ..data.io.safe_load import (
    MAX_TEXT_BYTES,
    MAX_WEIGHTS_BYTES,
    ZipPackage,
    member_name,
    parse_json,
    parse_yaml,
)
from ..training.bounds import MAX_DIVISOR, MAX_RADIUS, check_number, check_run_config
from ..training.config import RunConfig

log = logging.getLogger(__name__)

#: what ``isoapp export`` writes as the state-dict architecture
ISOAPP_ARCHITECTURES = {("isoapp.interop.bioimageio", "build_state_dict_model"),
                        ("isoapp.export", "build_state_dict_model")}  # packages exported before the layout move
TRUST_HINT = ("if you trust its author, pass --trust-torchscript (trust_torchscript=True in Python) to run its "
              "TorchScript, which is code with your rights, in a child process")

_CACHE: dict[tuple, Any] = {}


def open_package(path: str | Path, *, trust_torchscript: bool = False):
    """A :class:`~isoapp.methods.base.Method` that restores with the model in a bioimage.io package.

    Parameters
    ----------
    path
        The package (``.zip``).
    trust_torchscript
        Allow running the package's TorchScript (in a child process) when isoapp cannot rebuild
        its network. Without it such packages are refused.

    Raises
    ------
    ModelError
        One line: what is wrong with the package and what to do.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size, bool(trust_torchscript))
    if key in _CACHE:
        return _CACHE[key]
    pkg = ZipPackage(path)
    try:
        m = _open(pkg, trust_torchscript)
    finally:
        pkg.close()
    _CACHE.clear()
    _CACHE[key] = m
    return m


def _open(pkg: ZipPackage, trust: bool):
    if not pkg.has("rdf.yaml"):
        raise ModelError(f"{pkg.name} holds no rdf.yaml at its top level; it is not a bioimage.io model package")
    rdf = parse_yaml(pkg.read("rdf.yaml", MAX_TEXT_BYTES, "description"), f"{pkg.name}: rdf.yaml")
    if not isinstance(rdf, dict) or rdf.get("type") != "model":
        raise ModelError(f"{pkg.name}: rdf.yaml does not describe a model (type: model); give a bioimage.io model "
                         "package from isoapp export")
    check_sources(rdf, pkg.name)  # before anything else is read
    weights = rdf.get("weights")
    if not isinstance(weights, dict):
        raise ModelError(f"{pkg.name}: rdf.yaml lists no weights; it is not a usable model package")
    cfg, halo = _training(pkg, rdf)
    sd = weights.get("pytorch_state_dict")
    if isinstance(sd, dict) and _isoapp_architecture(sd):
        F = _check_architecture(sd, cfg, pkg.name)
        _check_axes(rdf, F, pkg.name)
        module = _rebuild(pkg, sd, cfg, F)
        return _packaged(cfg, module, halo, f"the network of {pkg.name}, rebuilt by isoapp")
    ts = weights.get("torchscript")
    why = ("its only weights are TorchScript" if not isinstance(sd, dict) else
           "its state-dict weights are not for a network isoapp builds")
    if not isinstance(ts, dict):
        raise ModelError(f"{pkg.name} lists no weights isoapp can use (neither isoapp's state dict nor TorchScript); "
                         "export the model again with isoapp export")
    if not trust:
        raise ModelError(f"{pkg.name} was refused: {why}, which isoapp would have to run as code; {TRUST_HINT}")
    F = _integer_factor(cfg, pkg.name)
    _check_axes(rdf, F, pkg.name)
    data = verified_member(pkg, ts, "TorchScript weights", MAX_WEIGHTS_BYTES)
    from .torchscript_sandbox import SandboxedModule

    module = SandboxedModule(data, name=pkg.name)
    module.describe()  # loads it in a child: its factor and divisor, before any work
    if module.factor != F:
        raise ModelError(f"{pkg.name}: its TorchScript restores with factor {module.factor}, but training.json says "
                         f"{F}; the package was altered: export the model again")
    check_number(module.divisor, 1, MAX_DIVISOR, pkg.name, "the TorchScript's divisor", integer=True)
    log.warning("%s: running its TorchScript (trusted with --trust-torchscript) in a child process", pkg.name)
    return _packaged(cfg, module, halo, f"the trusted TorchScript of {pkg.name}")


def check_sources(rdf: Any, where: str) -> None:
    """Refuse any ``source`` (or ``documentation``) that is a URL, an absolute path or leaves the package."""
    stack = [rdf]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k == "source" or (k == "documentation" and isinstance(v, str)):
                    member_name(v, where)
                else:
                    stack.append(v)
        elif isinstance(obj, list):
            stack.extend(obj)


def verified_member(pkg: ZipPackage, descr: dict, what: str, limit: int) -> bytes:
    """The bytes of the file ``descr`` names, checked against its ``sha256`` in the rdf."""
    name = member_name(descr.get("source"), pkg.name)
    want = descr.get("sha256")
    if not isinstance(want, str) or len(want) != 64:
        raise ModelError(f"{pkg.name}: {what} ({name[:60]}) has no sha256 in rdf.yaml, so isoapp cannot tell it is "
                         "intact; export the model again")
    data = pkg.read(name, limit, what)
    if hashlib.sha256(data).hexdigest() != want.lower():
        raise ModelError(f"{pkg.name}: {name[:60]} does not match its sha256 in rdf.yaml; the package is damaged or "
                         "was altered: download or export it again")
    return data


def _training(pkg: ZipPackage, rdf: dict) -> tuple[RunConfig, int]:
    """The run configuration in ``training.json``: validated, bounded; and the receptive-field radius."""
    atts = rdf.get("attachments") or []
    found = [a for a in atts if isinstance(a, dict) and isinstance(a.get("source"), str)
             and member_name(a["source"], pkg.name) == "training.json"] if isinstance(atts, list) else []
    if not found:
        raise ModelError(f"{pkg.name} was not exported by isoapp (no training.json); isoapp cannot tell what it "
                         "restores: run it with deepImageJ or bioimageio.core instead")
    where = f"{pkg.name}: training.json"
    info = parse_json(verified_member(pkg, found[0], "run configuration", MAX_TEXT_BYTES), where)
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise ModelError(f"{where} holds no run configuration (config); export the model again")
    try:
        cfg = RunConfig.model_validate(info["config"])
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError and odd values alike
        from ..training.config import _first_error

        raise ModelError(f"{where} is not a valid isoapp configuration: {_first_error(exc)[:120]}; export the model "
                         "again") from None
    check_run_config(cfg, where)
    halo = int(check_number(info.get("receptive_field_radius", 0), 0, MAX_RADIUS, where, "receptive_field_radius",
                            integer=True))
    return cfg, halo


def _isoapp_architecture(sd: dict) -> bool:
    arch = sd.get("architecture")
    return isinstance(arch, dict) and (arch.get("import_from"), arch.get("callable")) in ISOAPP_ARCHITECTURES


def _integer_factor(cfg: RunConfig, where: str) -> int:
    F = int(round(cfg.factor))
    if abs(cfg.factor - F) > 1e-6 * cfg.factor:
        raise ModelError(f"{where}: training.json's factor {cfg.factor:g} is not an integer, which no isoapp package "
                         "has; export the model again")
    return F


def _check_architecture(sd: dict, cfg: RunConfig, where: str) -> int:
    """The rdf's architecture arguments must repeat training.json: method, factor, voxel size, parameters."""
    from ..methods.base import is_exportable

    kw = sd["architecture"].get("kwargs")
    if not isinstance(kw, dict):
        raise ModelError(f"{where}: rdf.yaml gives no architecture arguments; export the model again")
    F = _integer_factor(cfg, where)
    f_mod = check_number(kw.get("factor"), 1.0, 10.0, f"{where}: rdf.yaml", "the module's factor", lo_open=True)
    if f_mod != F:
        raise ModelError(f"{where}: the module's factor {f_mod:g} (rdf.yaml) disagrees with training.json's {F}; the "
                         "package was altered: export the model again")
    if kw.get("method") != cfg.method or not is_exportable(cfg.method):
        raise ModelError(f"{where}: the module's method {str(kw.get('method'))[:30]!r} (rdf.yaml) disagrees with "
                         f"training.json's {cfg.method[:30]!r} or is not exportable; export the model again")
    vs = kw.get("voxel_size")
    if (not isinstance(vs, list) or len(vs) != 3
            or not all(isinstance(v, int | float) and math.isclose(v, w, rel_tol=1e-6)
                       for v, w in zip(vs, cfg.voxel_size, strict=True))):
        raise ModelError(f"{where}: the module's voxel size (rdf.yaml) disagrees with training.json's; export the "
                         "model again")
    if kw.get("params") != cfg.params:
        raise ModelError(f"{where}: the network parameters in rdf.yaml disagree with training.json's; export the "
                         "model again")
    return F


def _check_axes(rdf: dict, F: int, where: str) -> None:
    """The output z axis must have (n - 1) F + 1 planes, as the factor says."""
    try:
        zout = next(a for a in rdf["outputs"][0]["axes"] if isinstance(a, dict) and a.get("id") == "z")
        offset = zout["size"]["offset"]
    except (KeyError, IndexError, TypeError, StopIteration):
        raise ModelError(f"{where}: rdf.yaml has no output z axis of the form isoapp writes; export the model "
                         "again") from None
    if isinstance(offset, bool) or not isinstance(offset, int) or offset != 1 - F:
        raise ModelError(f"{where}: rdf.yaml's output z axis (offset {str(offset)[:20]}) does not match factor {F} "
                         f"(offset {1 - F}); the package was altered: export the model again")


def _rebuild(pkg: ZipPackage, sd: dict, cfg: RunConfig, F: int):
    """isoapp's own network for ``cfg``, with the package's state dict loaded as plain tensors."""
    from .torch_module import build_state_dict_model

    data = verified_member(pkg, sd, "state-dict weights", MAX_WEIGHTS_BYTES)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a pickle that is more than tensors, or a damaged file
        raise ModelError(f"{pkg.name}: the state-dict weights are not plain tensors ({exc.__class__.__name__}); "
                         "isoapp refuses them: export the model again") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ModelError(f"{pkg.name}: the state-dict weights are not a mapping of names to tensors; export the "
                         "model again")
    module = build_state_dict_model(cfg.method, F, list(cfg.voxel_size), dict(cfg.params))
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"{pkg.name}: the state-dict weights do not fit the {cfg.method} network of training.json "
                         f"({str(exc).splitlines()[0][:100]}); export the model again") from None
    return module.eval()


def _packaged(cfg: RunConfig, module, halo: int, description: str):
    """The Method that :func:`isoapp.run.restore.restore` calls, around ``module`` (eager or sandboxed)."""
    from pydantic import BaseModel, ConfigDict

    from ..methods.base import Method
    from .torch_module import run_module

    class _AnyParams(BaseModel):
        model_config = ConfigDict(extra="allow")

    class PackagedModel(Method):
        name = cfg.method
        Params = _AnyParams
        trainable = False

        def fit(self, vol, ctx) -> None:
            """Nothing to train: the package holds the trained network."""

        def predict(self, vol: np.ndarray, ctx) -> np.ndarray:
            stop: Callable[[], bool] | None = ctx.should_stop
            if hasattr(module, "session"):  # sandboxed TorchScript: one child process for the whole stack
                with module.session(device=ctx.device, should_stop=stop) as proxy:
                    return run_module(proxy, vol, divisor=int(module.divisor), halo=halo, device="cpu",
                                      should_stop=stop)
            return run_module(module, vol, divisor=int(module.divisor), halo=halo, device=ctx.device,
                              should_stop=stop)

    PackagedModel.description = description
    m = PackagedModel(cfg)
    if isinstance(module, torch.nn.Module):
        m.nets = {"module": module}
    return m
