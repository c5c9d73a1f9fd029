"""Presets link to where their tuned constants were measured (benchmarks/results/), not tables in the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from isoapp.methods import available_methods, get_method

ROOT = Path(__file__).resolve().parents[1]


def _anchors(path: Path) -> set[str]:
    """GitHub-style anchors of the Markdown headings in ``path``."""
    heads = re.findall(r"^#+\s+(.+?)\s*$", path.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("name", available_methods())
def test_every_provenance_is_a_link_to_a_section(name):
    for preset, p in get_method(name).presets.items():
        if not p.provenance:
            continue
        path, _, anchor = p.provenance.partition("#")
        target = ROOT / path
        assert target.is_file(), f"{name} {preset}: {p.provenance} names no file"
        assert anchor in _anchors(target), f"{name} {preset}: no section #{anchor} in {path}"
        assert "session" not in p.note.lower(), f"{name} {preset}: the note dates a figure by a session"


def test_the_tuned_fast_presets_keep_their_links():
    linked = {n for n in available_methods() if get_method(n).presets.get("fast") and
              get_method(n).presets["fast"].provenance}
    assert {"isonet", "selfnet", "otcyclegan"} <= linked
