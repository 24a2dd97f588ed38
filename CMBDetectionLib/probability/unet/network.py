"""The slice UNet of Ali et al. (2023), one definition for training and inference.

Encoder: 4 blocks (16, 32, 64, 128 filters) of two 3x3 conv + batch norm + LeakyReLU(0.05), then 2x2 max-pooling
and dropout 0.05. Bottleneck: two 3x3 conv + BN + LeakyReLU. Decoder: 4 blocks of a 3x3 transposed conv with
stride 2, concatenation with the matching encoder output, two 3x3 conv + BN + LeakyReLU. A 1x1 conv with a sigmoid
gives the CMB probability per pixel.

The input is ``(None, None, 1)``: the network is fully convolutional, so it trains on crops and runs on the
256x256 slices of inference. Height and width must be multiples of 16 (four poolings).

>>> import numpy as np
>>> model = build_unet()
>>> tuple(model(np.zeros((1, 256, 256, 1), "float32")).shape)
(1, 256, 256, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

ENCODER_FILTERS = (16, 32, 64, 128)
LEAKY_ALPHA = 0.05
DROPOUT_RATE = 0.05
SIZE_MULTIPLE = 2 ** len(ENCODER_FILTERS)


def _conv_bn_act(x, filters: int, name: str):
    """3x3 conv -> batch norm -> LeakyReLU, twice (one paper 'block' body)."""
    for n in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{n}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{n}")(x)
        x = layers.LeakyReLU(negative_slope=LEAKY_ALPHA, name=f"{name}_act{n}")(x)
    return x


def build_unet(filters: Sequence[int] = ENCODER_FILTERS, name: str = "cmb_unet") -> keras.Model:
    """Build the (uncompiled) UNet; ``filters`` other than the paper's are for tests and experiments only."""
    inputs = keras.Input(shape=(None, None, 1), name="swi_slice")
    x = inputs
    skips = []
    for level, width in enumerate(filters, start=1):
        x = _conv_bn_act(x, width, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
        x = layers.Dropout(DROPOUT_RATE, name=f"enc{level}_drop")(x)
    # The paper gives no bottleneck width; it follows the encoder's doubling (256).
    x = _conv_bn_act(x, 2 * filters[-1], "bottleneck")
    for level, (width, skip) in reversed(list(enumerate(zip(filters, skips), start=1))):
        x = layers.Conv2DTranspose(width, 3, strides=2, padding="same", name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skip])
        x = _conv_bn_act(x, width, f"dec{level}")
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="cmb_probability")(x)
    return keras.Model(inputs, outputs, name=name)
