"""Method-specific knowledge lives in the method classes; bench, block-wise runs, export and napari ask them."""

from __future__ import annotations

from isoapp.methods import available_methods, get_method
from isoapp.methods.base import block_methods, is_exportable
from isoapp.workflows.bench import default_methods


def test_bench_defaults_come_from_the_classes():
    assert default_methods() == ["linear", "cubic", "rl", "isonet", "selfnet", "otcyclegan", "selfvision",
                                 "isonet:wrongpsf"]


def test_block_capability_and_export_policy_come_from_the_classes():
    assert block_methods() == ["isonet", "selfnet", "linear", "cubic"]
    assert {n for n in available_methods() if is_exportable(n)} == {"isonet", "selfnet", "linear"}
    assert not is_exportable("no-such-method")
    assert {n: get_method(n).export_net for n in ("isonet", "selfnet", "linear")} == {
        "isonet": "net", "selfnet": "deblur", "linear": None}


def test_a_block_capable_method_gives_block_geometry():
    from isoapp.methods import build_config

    for name in block_methods():
        cfg = build_config(name, factor=4.0, voxel_size=(1.0, 0.25, 0.25))
        assert get_method(name)(cfg).block_geometry() is not None, name
