"""Method capabilities come from the method classes; the GUI and the CLI read them (issue 15, item 7)."""

from __future__ import annotations

import pytest

from isoapp.cli import build_parser
from isoapp.methods import available_methods, capabilities, default_method, get_method


def test_every_method_declares_its_capabilities():
    names = available_methods()
    assert {"linear", "cubic", "rl", "isonet", "selfnet", "otcyclegan", "selfvision"} <= set(names)
    for name in names:
        cap = capabilities(name)
        cls = get_method(name)
        assert cap["label"] and cap["label"] != name, f"{name} has no name for people"
        assert cap["dims"] in (2, 3) and isinstance(cap["trainable"], bool)
        assert cls.time_model.s_per_voxel > 0
        assert (cls.time_model.s_per_step > 0) == cls.trainable, name
        for opt, spec in cap["options"].items():
            assert opt in cls.Params.model_fields and spec["default"] is not None
    assert capabilities("selfvision")["options"]["axes"]["choices"] == ("z", "zyx")
    assert get_method("otcyclegan").dims == 3 and get_method("isonet").uses_psf
    assert default_method() == ("auto" if "auto" in names else "isonet")


def test_cli_lists_capabilities_and_has_no_generic_axes_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["restore", "--methods"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in available_methods():
        assert name in out and capabilities(name)["label"] in out
    assert "--param axes=z|zyx" in out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["restore", "in.tif", "-o", "out.tif", "--axes", "zyx"])


def test_gui_estimate_uses_no_method_lists():
    import isoapp.gui.estimate as est

    assert not hasattr(est, "THREE_D_METHODS")
    import isoapp.methods.base as base

    assert not hasattr(base, "_BUILTIN")
