"""Construction, forward shapes, padding and input validation of every backbone/arch."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets.efficientnet import EfficientNetEncoder as MonaiEfficientNetEncoder
from monai.networks.nets.resnet import ResNetEncoder as MonaiResNetEncoder

from rlar.errors import ConfigError
from rlar.models import BACKBONES, MultitaskOutput, RlarNet, build_model


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", ["multitask", "segmentation", "classification"])
def test_compact_outputs_and_size(arch: str) -> None:
    """Compact parameter counts (measured): multitask 1,538,322; segmentation 1,532,241; classification 840,561."""
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, tirads_dim=13, deep_dim=7)
    count = n_params(model)
    print(f"compact {arch}: {count:,} parameters")
    assert count < 2_000_000
    x = torch.rand(2, 1, 32, 48)
    out = model(x)
    assert isinstance(out, MultitaskOutput)
    assert model.representation_names == ("enc1", "enc2", "enc3", "enc4", "bottleneck")
    assert list(out.features) == list(model.representation_names)
    assert out.features["enc1"].shape == (2, 16, 32, 48)
    assert out.features["bottleneck"].shape == (2, 128, 2, 3)
    assert out.cut == [] and out.cut_layer is None
    if arch == "classification":
        assert out.mask_logits is None
    else:
        assert out.mask_logits is not None and out.mask_logits.shape == (2, 1, 32, 48)
    if arch == "segmentation":
        assert out.class_logits is None and out.h_tirads is None and out.h_deep is None
    else:
        assert out.class_logits is not None and out.class_logits.shape == (2, 5)
        assert out.h_tirads is not None and out.h_deep is not None
        assert out.h_tirads.shape == (2, 13) and out.h_deep.shape == (2, 7)


def test_head_reads_both_embedding_parts() -> None:
    """The TI-RADS logits depend on h_tirads and h_deep: the head's weight has one column per embedding dim."""
    model = build_model("classification", tirads_dim=13, deep_dim=4)
    out = model(torch.rand(2, 1, 32, 32))
    g_t, g_d = torch.autograd.grad(out.class_logits.sum(), [out.h_tirads, out.h_deep], retain_graph=True)
    assert g_t.abs().sum() > 0 and g_d.abs().sum() > 0


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet-b0", "efficientnet-lite0", "convnext"])
def test_gpu_backbones_forward_64(backbone: str) -> None:
    torch.manual_seed(0)
    model = build_model("multitask", backbone=backbone, num_classes=6)
    out = model(torch.rand(2, 1, 64, 64))
    assert out.mask_logits.shape == (2, 1, 64, 64)
    assert out.class_logits.shape == (2, 6)
    assert torch.isfinite(out.mask_logits).all() and torch.isfinite(out.class_logits).all()
    assert model.stride == 32
    assert out.features["bottleneck"].shape[-2:] == (2, 2)
    # every encoder parameter belongs to exactly one stage (needed for the trunk/head split)
    stage_ids = [id(p) for i in range(len(model.encoder.names)) for p in model.encoder.stage_parameters(i)]
    assert sorted(stage_ids) == sorted(id(p) for p in model.encoder.parameters())
    assert len(set(stage_ids)) == len(stage_ids)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50"])
def test_resnet_channels_match_monai_registry(backbone: str) -> None:
    model = build_model("classification", backbone=backbone)
    expected = MonaiResNetEncoder.num_channels_per_output()[MonaiResNetEncoder.backbone_names.index(backbone)]
    assert model.encoder.channels == tuple(expected)


@pytest.mark.parametrize("level", [0, 1, 2, 3, *(pytest.param(n, marks=pytest.mark.slow) for n in range(4, 8))])
def test_efficientnet_channels_match_monai_registry(level: int) -> None:
    name = f"efficientnet-b{level}"
    model = build_model("classification", backbone=name)
    expected = MonaiEfficientNetEncoder.num_channels_per_output()[MonaiEfficientNetEncoder.backbone_names.index(name)]
    assert model.encoder.channels == tuple(expected)
    # MONAI's unused classification head is removed so that every parameter gets a gradient
    assert not hasattr(model.encoder.net, "_fc")


def test_convnext_classifier_config() -> None:
    model = build_model(
        "classification", backbone="convnext", convnext_dims=(8, 16, 24), convnext_depths=(1, 1, 2), drop_path_rate=0.1
    )
    assert model.representation_names == ("enc1", "enc2", "bottleneck")
    assert model.stride == 16
    assert model.encoder.channels == (8, 16, 24)
    third = model.get_submodule("encoder.stages.2")
    assert isinstance(third, torch.nn.Sequential) and len(third) == 2
    out = model(torch.rand(3, 1, 32, 32))
    assert out.class_logits is not None and out.class_logits.shape == (3, 6) and out.mask_logits is None
    # layer scale starts near zero so each block starts near the identity
    assert torch.allclose(model.get_parameter("encoder.stages.0.0.gamma"), torch.full((8,), 1e-6))
    default = build_model("classification", backbone="convnext")
    assert default.encoder.channels == (32, 64, 128, 256)
    assert [len(list(s.children())) for s in default.get_submodule("encoder.stages").children()] == [2, 2, 4, 2]


def test_mid_level_pooling() -> None:
    model = build_model("multitask", cls_levels=("enc4", "bottleneck"))
    assert model.classifier is not None and model.classifier.embed.in_features == 128 + 128
    out = model(torch.rand(2, 1, 32, 32))
    assert out.class_logits is not None and out.class_logits.shape == (2, 6)
    with pytest.raises(ConfigError, match="enc9"):
        build_model("multitask", cls_levels=("enc9",))


def test_nodule_pooling_reads_the_predicted_nodule_without_teaching_it() -> None:
    torch.manual_seed(0)
    model = build_model("multitask", cls_pooling="nodule", cls_levels=("enc4", "bottleneck")).eval()
    assert model.classifier is not None and model.decoder is not None
    assert model.classifier.embed.in_features == 2 * (128 + 128)  # global + nodule-weighted average of each map
    image = torch.rand(2, 1, 37, 50)  # padded inside: the weights must follow the maps' padded grid
    out = model(image)
    assert out.class_logits is not None and out.class_logits.shape == (2, 6)
    # The nodule half is the maps averaged under sigmoid(mask logits), area-resized to each map.
    feats = [out.features["enc4"], out.features["bottleneck"]]
    padded, _ = model._pad(image)
    nodule = torch.sigmoid(model.decoder.forward_with_aux(
        [out.features[n] for n in model.encoder.names], with_aux=False)[0])
    assert nodule.shape[-2:] == padded.shape[-2:]
    weighted = []
    for f in feats:
        w = torch.nn.functional.adaptive_avg_pool2d(nodule, f.shape[-2:])
        weighted.append((f * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)))
    pooled = torch.cat([f.mean(dim=(2, 3)) for f in feats] + weighted, dim=1)
    expected = model.classifier.head(model.classifier.embed(pooled))
    torch.testing.assert_close(out.class_logits, expected, rtol=1e-5, atol=1e-6)
    # The TI-RADS loss reaches the encoder but never the decoder: the weights are detached.
    model.train().zero_grad(set_to_none=True)
    class_logits = model(image).class_logits
    assert class_logits is not None
    class_logits.sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.decoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.encoder.parameters())


def test_nodule_pooling_needs_a_decoder() -> None:
    with pytest.raises(ConfigError, match="model.options.cls_pooling.*segmentation decoder"):
        build_model("classification", cls_pooling="nodule")
    with pytest.raises(ConfigError, match="cls_pooling"):
        build_model("multitask", cls_pooling="mask")
    assert build_model("segmentation", cls_pooling="nodule").classifier is None


@pytest.mark.parametrize("size", [(37, 50), (17, 16), (5, 3)])
def test_odd_sizes_padded_and_cropped(size: tuple[int, int]) -> None:
    model = build_model("multitask").eval()
    x = torch.rand(1, 1, *size)
    out = model(x)
    assert out.mask_logits.shape == (1, 1, *size)
    assert out.class_logits.shape == (1, 6)


def test_padding_is_reflect_and_crop_aligned() -> None:
    """The crop must return exactly the input's pixels: compare with a manually reflect-padded input."""
    torch.manual_seed(0)
    model = build_model("segmentation").eval()
    x = torch.rand(1, 1, 30, 29)
    padded = torch.nn.functional.pad(x, (1, 2, 1, 1), mode="reflect")  # 32x32, pad split evenly
    with torch.no_grad():
        cropped = model(x).mask_logits
        full = model(padded).mask_logits
    assert torch.allclose(cropped, full[..., 1:31, 1:30], atol=1e-6)


def test_pad_mode_error() -> None:
    model = build_model("segmentation", pad_mode="error")
    with pytest.raises(ValueError, match="multiple of the network stride 16"):
        model(torch.rand(1, 1, 30, 32))
    assert model(torch.rand(1, 1, 32, 32)).mask_logits.shape == (1, 1, 32, 32)


def test_input_validation() -> None:
    model = build_model("multitask")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.rand(1, 32, 32))
    with pytest.raises(ValueError, match="1 input channel"):
        model(torch.rand(1, 3, 32, 32))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown representation 'enc7'"):
        model(torch.rand(1, 1, 32, 32), cut_at="enc7")


def test_build_errors() -> None:
    with pytest.raises(ConfigError, match="unknown backbone 'vgg'"):
        build_model("multitask", backbone="vgg")
    with pytest.raises(ValueError, match="arch must be one of"):
        build_model("detection")
    with pytest.raises(TypeError, match="unknown key"):
        build_model("multitask", chanels=(8, 16))
    with pytest.raises(ValueError, match="tirads_dim"):
        build_model("classification", tirads_dim=0, deep_dim=0)
    assert set(BACKBONES) >= {"compact", "resnet18", "efficientnet-b0", "efficientnet-b7", "convnext"}


def test_multichannel_input() -> None:
    model = build_model("multitask", in_channels=3)
    assert isinstance(model, RlarNet)
    assert model(torch.rand(1, 3, 32, 32)).mask_logits.shape == (1, 1, 32, 32)
