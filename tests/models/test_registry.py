"""The backbone registry (docs/interfaces.md): typed options per backbone, errors naming model.options.<key>, and a toy
backbone added with one file plus one registry line that trains one step."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from rlar.errors import ConfigError
from rlar.losses import MultitaskLoss
from rlar.models import BACKBONES, BackboneSpec, build_encoder, build_model, validate_backbone_options
from rlar.tasks import RADIOMICS_DIM


def test_every_spec_is_consistent() -> None:
    for name, spec in BACKBONES.items():
        assert isinstance(spec, BackboneSpec) and spec.name == name
        assert spec.options.model_config.get("extra") == "forbid", name
        validate_backbone_options(name, {})  # the defaults are valid


@pytest.mark.parametrize(
    ("backbone", "raw", "key", "message"),
    [
        ("compact", {"chanels": [8, 16]}, "model.options.chanels", "unknown key for backbone .compact."),
        ("compact", {"compact_channels": [8, 0]}, "model.options.compact_channels", "positive"),
        ("compact", {"encoder_dropout": 1.5}, "model.options.encoder_dropout", "less than 1"),
        ("resnet18", {"compact_channels": [8, 16]}, "model.options.compact_channels", "unknown key for backbone .resnet18."),
        ("convnext", {"convnext_dims": [8, 16]}, "model.options.convnext_dims", "same length"),
        ("efficientnet-lite0", {"pretrained": "maybe"}, "model.options.pretrained", "boolean"),
        ("compact", {"pad_mode": "wrap"}, "model.options.pad_mode", "reflect"),
        ("compact", {"head_hidden": 0}, "model.options.head_hidden", "greater than or equal to 1"),
    ],
)
def test_option_errors_name_the_key(backbone: str, raw: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        validate_backbone_options(backbone, raw)
    assert info.value.key == key


def test_unknown_backbone_and_error_types() -> None:
    with pytest.raises(ConfigError) as info:
        validate_backbone_options("vgg", {})
    assert info.value.key == "model.backbone"
    with pytest.raises(ConfigError, match="unknown backbone 'vgg'"):
        build_model(backbone="vgg")
    with pytest.raises(TypeError, match="unknown key"):
        build_encoder("compact", chanels=(8,))


def test_errors_pass_through_a_pydantic_validator_with_their_key() -> None:
    """A config loader validates inside a pydantic validator: the error must come out as itself, key intact."""

    from pydantic import BaseModel, model_validator

    class ModelSection(BaseModel):
        backbone: str
        options: dict[str, Any]

        @model_validator(mode="after")
        def _check(self) -> ModelSection:
            validate_backbone_options(self.backbone, self.options)
            return self

    cases: list[tuple[str, dict[str, Any], str]] = [("compact", {"compact_channels": [8, 0]}, "model.options.compact_channels"),
                               ("compact", {"chanels": 1}, "model.options.chanels"),
                               ("vgg", {}, "model.backbone")]
    for backbone, raw, key in cases:
        with pytest.raises(ConfigError) as info:
            ModelSection(backbone=backbone, options=raw)
        assert info.value.key == key


def test_options_from_yaml_lists_and_network_options_for_every_backbone() -> None:
    opts = validate_backbone_options(
        "compact", {"compact_channels": [8, 16], "norm": ["group", {"num_groups": 4}], "cls_levels": ["enc2"]}
    )
    dumped = opts.model_dump()
    assert dumped["compact_channels"] == (8, 16) and dumped["cls_levels"] == ("enc2",)
    assert dumped["norm"] == ("group", {"num_groups": 4})
    model = build_model("multitask", **dumped)
    assert model.encoder.channels == (8, 16, 16)
    assert model(torch.rand(2, 1, 16, 16)).mask_logits.shape == (2, 1, 16, 16)
    for name in BACKBONES:
        assert validate_backbone_options(name, {"cls_dropout": 0.1}).model_dump()["cls_dropout"] == 0.1


TOY_BACKBONE = '''
"""A toy backbone: two strided convolutions."""
import torch
from pydantic import Field
from torch import nn

from rlar.models.base import Encoder, stage_names
from rlar.models.spec import BackboneOptions, BackboneSpec


class ToyEncoder(Encoder):
    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList([
            nn.Sequential(nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU()),
        ])
        self.names = stage_names(2)
        self.channels = (width, 2 * width)
        self.strides = (2, 4)

    def run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.stages[index](x)

    def stage_modules(self, index: int) -> list[nn.Module]:
        return [self.stages[index]]


class ToyOptions(BackboneOptions):
    toy_width: int = Field(4, ge=1)


SPECS = (BackboneSpec(name="toy", options=ToyOptions, build=lambda c, o, n: ToyEncoder(c, o.toy_width),
                      family="toy", description="two strided convolutions"),)
'''


def test_toy_backbone_in_one_file_plus_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "toy_backbone.py"
    path.write_text(textwrap.dedent(TOY_BACKBONE))
    spec = importlib.util.spec_from_file_location("toy_backbone", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "toy_backbone", module)
    spec.loader.exec_module(module)
    monkeypatch.setitem(BACKBONES, "toy", module.SPECS[0])  # the one registry line

    with pytest.raises(ConfigError) as info:
        validate_backbone_options("toy", {"toy_width": 0})
    assert info.value.key == "model.options.toy_width"

    torch.manual_seed(0)
    model = build_model("multitask", backbone="toy", num_classes=3, toy_width=6)
    assert model.encoder.channels == (6, 12) and model.stride == 4
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = {
        "image": torch.rand(4, 1, 16, 16),
        "mask": (torch.rand(4, 1, 16, 16) > 0.5).float(),
        "has_mask": torch.tensor([True, True, False, True]),
        "label": torch.tensor([0, 2, -1, 1]),
        "radiomics": torch.randn(4, RADIOMICS_DIM),
        "has_radiomics": torch.tensor([True, False, False, True]),
    }
    out = model(batch["image"])
    losses = MultitaskLoss()(out, batch)
    assert set(losses) == {"seg", "cls", "rad"}
    sum(losses.values()).backward()
    optimizer.step()
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.stages.0") for k in changed)
    assert any(k.startswith("decoder.") for k in changed) and any(k.startswith("classifier.") for k in changed)
