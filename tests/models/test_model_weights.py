"""pretrained_path: round trips, backbone-only files, RGB stems, and clear errors for wrong files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.networks.nets import ResNetFeatures

from rlar.models import build_model, load_pretrained


def test_whole_network_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_model("multitask")
    path = tmp_path / "net.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    target = build_model("multitask", pretrained_path=path)
    ref = source.state_dict()
    for key, value in target.state_dict().items():
        assert torch.equal(value, ref[key]), key
    report = target.pretrained_report
    assert report is not None
    assert report.target == "network" and not report.missing and not report.unexpected
    assert len(report.loaded) == len(ref)


def test_checkpoint_wrapper_and_dataparallel_prefix(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_model("classification")
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = build_model("classification", pretrained_path=path)
    w = "classifier.embed.weight"
    assert torch.equal(target.state_dict()[w], source.state_dict()[w])


def test_backbone_only_file_with_rgb_stem(tmp_path: Path) -> None:
    """An RGB ResNet state dict (library keys) loads into the encoder; the stem is summed over RGB."""
    torch.manual_seed(0)
    rgb = ResNetFeatures("resnet18", pretrained=False, spatial_dims=2, in_channels=3)
    state = rgb.state_dict()
    state["fc.weight"] = torch.zeros(2, 2)  # a key the feature encoder does not have
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="unexpected"):
        model = build_model("multitask", backbone="resnet18", pretrained_path=path)
    report = model.pretrained_report
    assert report is not None
    assert report.target == "backbone"
    assert report.adapted == ["conv1.weight"]
    assert report.unexpected == ["fc.weight"]
    assert torch.equal(model.get_parameter("encoder.net.conv1.weight"), state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.get_parameter("encoder.net.layer3.0.conv1.weight"), state["layer3.0.conv1.weight"])


def test_partial_file_reports_missing(tmp_path: Path) -> None:
    model = build_model("segmentation")
    state = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    path = tmp_path / "encoder_only.pt"
    torch.save(state, path)
    other = build_model("segmentation")
    with pytest.warns(UserWarning, match="missing"):
        report = load_pretrained(other, path)
    assert report.missing and all(k.startswith("decoder.") for k in report.missing)
    assert torch.equal(other.state_dict()["encoder.stages.0.conv.unit0.conv.weight"],
                       state["encoder.stages.0.conv.unit0.conv.weight"])


def test_not_a_state_dict_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match=r"list\.pt.*state dict"):
        build_model("multitask", pretrained_path=path)
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not weights")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        build_model("multitask", pretrained_path=garbage)
    mixed = tmp_path / "mixed.pt"
    torch.save({"a": torch.zeros(1), "b": "text"}, mixed)
    with pytest.raises(ValueError, match=r"mixed\.pt.*not a state dict"):
        build_model("multitask", pretrained_path=mixed)
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        build_model("multitask", pretrained_path=tmp_path / "nowhere.pt")


def test_unrelated_keys_error(tmp_path: Path) -> None:
    path = tmp_path / "other_arch.pt"
    torch.save({"transformer.block.0.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=r"other_arch\.pt: none of its 1 keys match"):
        build_model("multitask", pretrained_path=path)
