"""The sources registry (issue 7, docs/interfaces.md): one table read by open_source, the CLI and the docs; typed options."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rlar.data import sources
from rlar.data.sources import SOURCES, open_source, validate_source_options
from rlar.data.sources.base import Source
from rlar.data.sources.phantom import PhantomSource
from rlar.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_registry_maps_names_to_source_classes() -> None:
    assert set(SOURCES) == {"ddti", "thyroidxl", "aimi", "folder", "phantom"}
    for name, cls in SOURCES.items():
        assert issubclass(cls, Source) and cls.name == name


def test_every_source_has_a_row_in_the_data_formats_doc() -> None:
    text = (REPO / "docs" / "data-formats.md").read_text()
    rows = {line.split("|")[1].strip().strip("`") for line in text.splitlines() if line.startswith("| `")}
    missing = set(SOURCES) - rows
    assert not missing, f"docs/data-formats.md has no table row for source(s) {sorted(missing)}"


@pytest.mark.parametrize(
    ("name", "raw", "key", "needle"),
    [
        ("folder", {"scal": "ddti"}, "data.options.scal", "did you mean 'scale'?"),
        ("phantom", {"n_case": 3}, "data.options.n_case", "did you mean 'n_cases'?"),
        ("phantom", {"n_cases": "many"}, "data.options.n_cases", "valid integer"),
        ("ddti", {"crop": "sometimes"}, "data.options.crop", "valid boolean"),
        ("aimi", {"frame_stride": [1]}, "data.options.frame_stride", "valid integer"),
    ],
)
def test_bad_options_raise_config_error_naming_the_option(name: str, raw: dict[str, Any], key: str,
                                                          needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_source_options(name, raw)
    assert info.value.key == key and needle in info.value.reason
    with pytest.raises(ConfigError) as again:  # open_source validates first: never a TypeError
        open_source(name, None, **raw)
    assert again.value.key == key


def test_valid_options_are_converted_for_the_constructor() -> None:
    source = open_source("phantom", None, n_cases="3", image_size=[40, 48])
    assert isinstance(source, PhantomSource)
    assert len(source) == 3 and source.image_size == (40, 48)
    assert validate_source_options("folder", {"scale": "ddti"}).scale == "ddti"  # type: ignore[attr-defined]


def test_unknown_source_and_missing_root_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        open_source("foldr", None)
    assert info.value.key == "data.source" and "did you mean 'folder'?" in info.value.reason
    for name in ("folder", "ddti", "thyroidxl", "aimi"):
        with pytest.raises(ConfigError) as missing:
            open_source(name, None)
        assert missing.value.key == "data.root" and "--root" in missing.value.reason


def test_a_toy_source_is_one_file_and_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "toy_source_mod.py"
    module.write_text(textwrap.dedent('''
        import numpy as np
        from rlar.data.record import SampleInfo
        from rlar.data.sources.base import Source

        class ToySource(Source):
            name = "toy"
            scale = "acr"

            def __init__(self, root=None, n: int = 2, level: str = "TR3") -> None:
                self.n, self.level = n, level
                super().__init__(root)

            def _scan(self):
                for i in range(self.n):
                    yield SampleInfo(image_id=f"t{i}", patient_id=f"p{i}", source=self.name, tirads=self.level,
                                     scale=self.scale, has_mask=True, location=i)

            def _load(self, info):
                image = np.full((32, 32), 0.25 + 0.1 * info.location, np.float32)
                mask = np.zeros((32, 32), bool)
                mask[8:20, 10:24] = True
                return image, mask, {}
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_source_mod", raising=False)
    from toy_source_mod import ToySource

    monkeypatch.setitem(sources.SOURCES, "toy", ToySource)  # the one registry line
    toy = open_source("toy", None, n="3")
    first_mask = toy[0].mask
    assert len(toy) == 3 and toy[2].image[0, 0] == pytest.approx(0.45) and first_mask is not None
    assert first_mask.sum() == 12 * 14
    assert "toy" in sources.source_names()
    with pytest.raises(ConfigError, match="did you mean 'level'"):
        open_source("toy", None, levl="TR4")

    # ... and it trains: one epoch of a tiny multitask run on the toy source, through the normal config and runner.
    from rlar.training.config import load_config
    from rlar.training.run import run_training

    cfg = load_config(None, [
        "method=vanilla_mtl", "data.source=toy", "data.options={n: 12}", "data.image_size=32", "data.n_folds=2",
        "data.group_by_content=false", "model.deep_dim=4", "model.options={compact_channels: [4, 8, 8, 8]}",
        "optim.epochs=1", "optim.batch_size=4", "optim.warmup_epochs=0", "training.device=cpu",
        "training.cpu_threads=1", f"data.cache_dir={tmp_path / 'cache'}",
    ])
    metrics = run_training(cfg, tmp_path / "run", progress=False)
    assert metrics["run"]["epochs_run"] == 1 and metrics["run"]["n_test"] == 6
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
