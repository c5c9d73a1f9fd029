"""Package cases of the safety battery (``benchmarks/safety_battery.py``, issue 28 "Security").

``make_package_fixtures`` exports a tiny IsoNet with the real ``isoapp export`` and writes tampered
copies of the package (valid sha256 sums kept in rdf.yaml unless the case is about them), model
folders with out-of-range numbers and checkpoints with impossible steps; ``build_package_cases``
lists the cases: TorchScript that writes a file or never returns, parser bombs, sources outside the
package, numbers out of bounds or contradicting each other. A TorchScript that wrote would change
``victim.txt`` in the fixtures folder, which the battery's digest catches; a pickle that ran would
create ``PWNED``; a fetched URL would add to ``~/.cache/bioimageio`` (checked after each case).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

from hostile_packages import tamper
from safety_battery_cases import ENV, Case, run_cli

CATEGORY = "package"
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(9))

HOSTILE = Path(__file__).resolve().parent / "hostile_packages.py"  # hostile modules and tamper(), shared with the tests


def _cache_listing() -> list[str]:
    d = Path.home() / ".cache" / "bioimageio"
    return sorted(str(p) for p in d.rglob("*")) if d.is_dir() else []


def _no_state_dict(doc: dict) -> None:
    del doc["weights"]["pytorch_state_dict"]
    doc["weights"]["torchscript"].pop("parent", None)


def _kw(**kv):
    def edit(doc: dict) -> None:
        doc["weights"]["pytorch_state_dict"]["architecture"]["kwargs"].update(kv)
    return edit


def _cfg(path: list[str], value):
    def edit(info: dict) -> None:
        d = info
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


def _set(path: list, value):
    def edit(doc: dict) -> None:
        d = doc
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


# ---------------------------------------------------------------------------- fixtures
def make_package_fixtures(fx: Path) -> None:
    """The tiny model, its package and every tampered copy, in ``fx/pkg``."""
    import torch

    d = fx / "pkg"
    d.mkdir()
    run_cli(["restore", str(fx / "in.tif"), "-o", str(fx / "junk_pkg.tif"), "--method", "isonet", "--steps", "2",
             "--param", "n_filters=4", "--param", "depth=1", "--save-model", str(d / "model"), "--work-dir",
             str(d / "wd"), "-q"])
    (fx / "junk_pkg.tif").unlink()
    run_cli(["export", str(d / "model"), "-o", str(d / "good.zip"), "--input", str(fx / "in.tif"), "-q"])
    (fx / "victim.txt").write_text("a file the user owns; no package may change it\n")
    subprocess.run([sys.executable, str(HOSTILE), str(fx.parent), str(fx / "victim.txt"),
                    str(fx.parent / "PWNED")], check=True, env=ENV, capture_output=True)
    ts = {k: (fx.parent / f"ts_{k}.pt").read_bytes() for k in ("evil", "loop", "loop3")}
    sd_pickle = (fx.parent / "sd_pickle.pt").read_bytes()
    good = d / "good.zip"
    with zipfile.ZipFile(good) as z:
        rdf_text = z.read("rdf.yaml").decode()
    t = {
        "evil_ts_both": dict(replace={"isoapp_torchscript.pt": ts["evil"]}),
        "evil_ts_only": dict(replace={"isoapp_torchscript.pt": ts["evil"]}, rdf=_no_state_dict),
        "ts_only": dict(rdf=_no_state_dict),
        "loop_ts_only": dict(replace={"isoapp_torchscript.pt": ts["loop"]}, rdf=_no_state_dict),
        "loop3_ts_only": dict(replace={"isoapp_torchscript.pt": ts["loop3"]}, rdf=_no_state_dict),
        "foreign_arch": dict(rdf=_set(["weights", "pytorch_state_dict", "architecture"],
                                      {"callable": "system", "import_from": "os", "kwargs": {"command": "true"}})),
        "no_training": dict(rdf=_set(["attachments"], [])),
        "no_weights": dict(rdf=_set(["weights"], {})),
        "laughs": dict(rdf_text=BILLION_LAUGHS + "type: model\n"),
        "big_rdf": dict(rdf_text=rdf_text + "#" + "x" * (40 * 2**20) + "\n"),
        "big_training": dict(training=lambda i: i.update(padding=" " * (64 * 2**20))),
        "deep_yaml": dict(rdf_text="a: " + "[" * 5000 + "]" * 5000 + "\ntype: model\n"),
        "python_tag": dict(rdf_text="type: model\nx: !!python/object/apply:os.system ['touch PWNED']\n"),
        "rdf_list": dict(rdf_text="- type\n- model\n"),
        "rdf_dataset": dict(rdf=_set(["type"], "dataset")),
        "training_badjson": dict(replace={"training.json": b"{oops"}),
        "training_noconfig": dict(training=lambda i: i.pop("config")),
        "training_nested": dict(replace={"training.json": b"[" * 100_000 + b"]" * 100_000}),
        "sd_pickle": dict(replace={"isoapp_state_dict.pt": sd_pickle}),
        "sd_shapes": dict(replace={"isoapp_state_dict.pt": _tensor_bytes(torch, {"net.bad": torch.zeros(2)})}),
        "src_http": dict(rdf=_set(["attachments", 0, "source"], "http://127.0.0.1:8799/training.json")),
        "src_abs": dict(rdf=_set(["attachments", 0, "source"], str(d / "model" / "config.json"))),
        "src_dotdot": dict(rdf=_set(["attachments", 0, "source"], "../model/config.json")),
        "src_file_url": dict(rdf=_set(["attachments", 0, "source"], "file:///etc/passwd")),
        "weights_url": dict(rdf=_set(["weights", "pytorch_state_dict", "source"], "https://example.org/w.pt")),
        "test_tensor_url": dict(rdf=_set(["inputs", 0, "test_tensor", "source"], "https://example.org/t.npy")),
        "missing_member": dict(drop=("isoapp_state_dict.pt",)),
        "hash_mismatch": dict(training=_cfg(["config", "seed"], 7), rehash=False),
        "module_factor_1000": dict(rdf=_kw(factor=1000)),
        "module_factor_3": dict(rdf=_kw(factor=3)),
        "module_params": dict(rdf=_kw(params={"n_filters": 128, "depth": 4})),
        "z_offset": dict(rdf=lambda doc: next(a for a in doc["outputs"][0]["axes"]
                                               if a.get("id") == "z")["size"].update(offset=-999)),
        "train_factor_1e9": dict(training=_cfg(["config", "factor"], 1e9)),
        "train_sigma_5e7": dict(training=_cfg(["config", "degradation", "axial_sigma_px"], 5e7)),
        "train_voxel_neg": dict(training=_cfg(["config", "voxel_size"], [-0.8, 0.2, 0.2])),
        "radius_-7": dict(training=_cfg(["receptive_field_radius"], -7)),
        "radius_1e9": dict(training=_cfg(["receptive_field_radius"], 10**9)),
        "steps_1e15": dict(training=_cfg(["config", "train", "steps"], 10**15)),
        "tile_1e9": dict(training=_cfg(["config", "params", "tile"], 10**9)),
    }
    for name, kw in t.items():
        tamper(good, d / f"{name}.zip", **kw)
    link = zipfile.ZipInfo("link")
    link.external_attr = 0o120777 << 16
    tamper(good, d / "zip_symlink.zip", extra=[(link, "/etc/passwd")])
    tamper(good, d / "zip_abs.zip", extra=[(zipfile.ZipInfo("/tmp/isoapp-abs"), "x")])
    tamper(good, d / "zip_dotdot.zip", extra=[(zipfile.ZipInfo("../isoapp-slip"), "x")])
    (d / "not_a_zip.zip").write_text("not a zip file\n")
    with zipfile.ZipFile(d / "empty.zip", "w"):
        pass
    for f in ("mkts.py", "ts_evil.pt", "ts_loop.pt", "ts_loop3.pt", "sd_pickle.pt"):
        (fx.parent / f).unlink()
    # model folders with out-of-range numbers, and checkpoints with impossible steps
    cfg = json.loads((d / "model" / "config.json").read_text())
    for name, sigma in (("m_sigma_5e7", 5e7), ("m_sigma_1e9", 1e9)):
        shutil.copytree(d / "model", d / name)
        c = json.loads(json.dumps(cfg))
        c["degradation"]["axial_sigma_px"] = sigma
        (d / name / "config.json").write_text(json.dumps(c))
    saved = torch.load(d / "wd" / "isonet.ckpt", weights_only=True)
    for name, step in (("ck_neg", -5), ("ck_huge", 10**15), ("ck_float", 2.5)):
        (d / name).mkdir()
        torch.save({**saved, "step": step}, d / name / "isonet.ckpt")


def _tensor_bytes(torch, obj) -> bytes:
    import io

    b = io.BytesIO()
    torch.save(obj, b)
    return b.getvalue()


def _no_child_left(_w: Path) -> str | None:
    """After a stopped trusted run: no TorchScript child process may survive its parent."""
    import time

    time.sleep(1.0)
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] if cmd else "Z"
        except OSError:
            continue
        if b"isoapp.interop.torchscript_sandbox" in cmd and state != "Z":
            return f"the TorchScript child {proc.name} survived the stop"
    return None


# ---------------------------------------------------------------------------- cases
def build_package_cases(fx: Path, w: Path) -> list[Case]:
    cases: list[Case] = []
    d = fx / "pkg"
    inp = str(fx / "in.tif")
    cache = _cache_listing()

    def no_fetch(_w: Path) -> str | None:
        return None if _cache_listing() == cache else "~/.cache/bioimageio changed: something was fetched"

    def p(name: str, pkg: str, *extra: str, expect: str = "error") -> None:
        cases.append(Case(CATEGORY, name, ["restore", inp, "-o", str(w / f"pk_{len(cases)}.tif"), "--model",
                                           str(d / f"{pkg}.zip"), *extra], expect=expect, after=no_fetch))

    p("own package restores (network rebuilt)", "good", expect="ok")
    p("own package, TorchScript writes a file: not run", "evil_ts_both", expect="ok")
    p("TorchScript-only package that writes a file: refused", "evil_ts_only")
    p("TorchScript-only package: refused without trust", "ts_only")
    p("TorchScript-only package, --trust-torchscript: runs in a child", "ts_only", "--trust-torchscript",
      expect="ok")
    p("foreign architecture (os.system): refused", "foreign_arch")
    p("foreign architecture, --trust-torchscript: its TorchScript in a child", "foreign_arch",
      "--trust-torchscript", expect="ok")
    p("endless TorchScript without trust: refused", "loop_ts_only")
    p("trusted TorchScript of factor 3 vs training.json 4", "loop3_ts_only", "--trust-torchscript")
    p("no training.json (not isoapp's)", "no_training", "--trust-torchscript")
    p("no weights", "no_weights")
    for name in ("laughs", "big_rdf", "big_training", "deep_yaml", "python_tag", "rdf_list", "rdf_dataset",
                 "training_badjson", "training_noconfig", "training_nested", "sd_pickle", "sd_shapes",
                 "src_http", "src_abs", "src_dotdot", "src_file_url", "weights_url", "test_tensor_url",
                 "missing_member", "hash_mismatch", "zip_symlink", "zip_abs", "zip_dotdot", "not_a_zip", "empty",
                 "module_factor_1000", "module_factor_3", "module_params", "z_offset", "train_factor_1e9",
                 "train_sigma_5e7", "train_voxel_neg", "radius_-7", "radius_1e9", "steps_1e15", "tile_1e9"):
        p(name.replace("_", " "), name)
    for name in ("m_sigma_5e7", "m_sigma_1e9"):
        cases.append(Case(CATEGORY, f"model folder {name}", ["restore", inp, "-o", str(w / f"pk_{len(cases)}.tif"),
                                                             "--model", str(d / name)], expect="error"))
    for name in ("ck_neg", "ck_huge", "ck_float"):
        wd = w / f"pk_{name}"
        shutil.copytree(d / name, wd)
        cases.append(Case(CATEGORY, f"checkpoint {name} --resume",
                          ["restore", inp, "-o", str(w / f"pk_{name}.tif"), "--method", "isonet", "--steps", "3",
                           "--param", "n_filters=4", "--param", "depth=1", "--work-dir", str(wd), "--resume"],
                          expect="error"))
    for sig in (signal.SIGINT, signal.SIGTERM, -signal.SIGINT):
        sn = ("twice " if sig < 0 else "") + signal.Signals(abs(sig)).name
        cases.append(Case(CATEGORY, f"{sn} during an endless trusted TorchScript",
                          ["restore", inp, "-o", str(w / f"pk_loop_{sn.replace(' ', '_')}.tif"), "--model",
                           str(d / "loop_ts_only.zip"), "--trust-torchscript"], expect="signal", mode="signal",
                          sig=sig, wait_for="to the TorchScript process", after=_no_child_left))
    return cases
