"""The from-scratch ladder, in the seed notebooks' shape: each rung adds one technique to one network.

``cnn_base`` is the notebooks' "Conv2D > Conv2D > MaxPooling2D > ... > Flatten > Dense" network,
sized for real photos on a CPU: stages of two 3x3 convolutions ('same' padding) + ReLU and a 2x2
max pool, 16 -> 32 -> 64 filters (a stage more per doubling of the input side past 32 px, up to 5
stages and 128 filters), flattened from a 4x4 map into a 256-unit dense layer and the classes.
About 20 MFLOPs per 32 px image: a training epoch of 10,000 CIFAR photos takes seconds, not minutes. ``cnn_aug`` trains
it with augmentation, ``cnn_bn`` adds batch norm after each convolution, ``cnn_dropout`` adds
dropout after each stage and in the head plus L2 weight decay. The backbone is a flat
``nn.Sequential`` (each child one layer, as in Keras' ``model.layers``; layer names carry the stage
number, which makes the stages the backbone's blocks).

``resnet_scratch`` is timm's ResNet with basic blocks (2 per stage, 16 -> 128 channels) and its
"deep" stem (three 3x3 convolutions); for inputs of 64 px or less the stem keeps full resolution
(stride 1, no max pool) instead of shrinking a 32 px photo to 8 px at once, as in the CIFAR ResNets.
``resnet34_scratch`` is the seeds' ResNet-34 (3-4-6-3 blocks, 64 -> 512 channels) with the ImageNet
stride-4 stem at every size.
"""
from __future__ import annotations

import math
from collections import OrderedDict

from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from ..errors import ConfigError

WIDTHS = (16, 32, 64, 128, 128)    # filters per stage: sized for a CPU (measured ~40 GFLOPS on 2 cores)
MIN_STAGES = 3
FLAT_SIDE = 4                      # the map is pooled down to about this side before flattening
HIDDEN = (256,)
MIN_INPUT = 32


def ladder_stages(input_size: int) -> int:
    """3 stages for 32 px inputs, one more per doubling, at most 5 (``input_size / 2**stages ~ 4``)."""
    s = int(input_size)
    if s < MIN_INPUT:
        raise ConfigError(f"the CNN ladder needs input_size >= {MIN_INPUT}, got {input_size}")
    return max(MIN_STAGES, min(len(WIDTHS), int(round(math.log2(s / FLAT_SIDE)))))


class LadderBackbone(nn.Sequential):
    """Stages of (conv3x3 [-> bn] -> relu) x 2 -> maxpool [-> dropout], then flatten.

    ``num_features`` is the flatten size (channels x side x side of the last map).
    """

    def __init__(self, input_size: int = 32, *, batch_norm: bool = False, dropout: float = 0.0, convs: int = 2):
        stages = ladder_stages(input_size)
        layers: list[tuple[str, nn.Module]] = []
        in_ch, side = 3, int(input_size)
        for i in range(1, stages + 1):
            width = WIDTHS[i - 1]
            for j in range(1, convs + 1):
                layers.append((f"conv{i}_{j}", nn.Conv2d(in_ch, width, 3, padding=1, bias=not batch_norm)))
                if batch_norm:
                    layers.append((f"bn{i}_{j}", nn.BatchNorm2d(width)))
                layers.append((f"relu{i}_{j}", nn.ReLU(inplace=True)))
                in_ch = width
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
            side //= 2
            if dropout > 0:
                layers.append((f"drop{i}", nn.Dropout(dropout)))
        layers.append(("flatten", nn.Flatten(1)))
        super().__init__(OrderedDict(layers))
        self.input_size = int(input_size)
        self.num_features = in_ch * side * side


def build_ladder(input_size: int, *, batch_norm: bool = False, dropout: float = 0.0) -> LadderBackbone:
    return LadderBackbone(input_size, batch_norm=batch_norm, dropout=dropout)


def build_resnet(input_size: int, *, layers: tuple[int, ...] = (2, 2, 2, 2),
                 channels: tuple[int, ...] = (16, 32, 64, 128), small_input_stem: bool = True) -> ResNet:
    """timm ResNet (basic blocks, deep stem) with ``num_classes=0``; with ``small_input_stem``, a
    stride-1 stem without max pool for inputs <= 64 px."""
    # timm annotates ``block`` as an instance (BasicBlock | Bottleneck); it takes the class
    model = ResNet(BasicBlock, layers=layers, channels=channels, stem_type="deep",  # type: ignore[arg-type]
                   stem_width=channels[0] // 2, num_classes=0)
    if small_input_stem and int(input_size) <= 64:
        stem = model.conv1[0]
        assert isinstance(stem, nn.Conv2d)  # the deep stem's first convolution
        stem.stride = (1, 1)
        # timm types maxpool by its first assignment (nn.Sequential) and swaps in nn.Identity itself
        model.maxpool = nn.Identity()  # type: ignore[assignment]
    return model
