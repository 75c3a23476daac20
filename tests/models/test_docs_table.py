"""docs/models.md has a row for every registered backbone, naming each of its options, with true parameter counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlar.models import BACKBONES, build_model

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 7:
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_backbone_has_its_row_with_its_options() -> None:
    rows = _rows()
    missing = [name for name in BACKBONES if name not in rows]
    assert not missing, f"docs/models.md has no row for {missing}"
    assert not set(rows) - set(BACKBONES), f"rows for unregistered backbones: {sorted(set(rows) - set(BACKBONES))}"
    for name, spec in BACKBONES.items():
        for field in spec.options.model_fields:
            assert f"`{field}`" in rows[name][4], f"{name}: option {field} missing from its docs row"


@pytest.mark.parametrize("name", ["compact", "efficientnet-lite0", "convnext"])
def test_documented_parameter_counts_are_true(name: str) -> None:
    model = build_model("multitask", name, num_classes=6)
    row = _rows()[name]
    assert int(row[1].replace(",", "")) == sum(p.numel() for p in model.encoder.parameters())
    assert int(row[2].replace(",", "")) == sum(p.numel() for p in model.parameters())
    assert int(row[3]) == model.stride
