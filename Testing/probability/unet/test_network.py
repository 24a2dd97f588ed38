"""The UNet matches Ali et al. (2023): layer kinds, filters, LeakyReLU 0.05, dropout 0.05, stride-2 transposed convs."""

from __future__ import annotations

import numpy as np
import pytest
from keras import layers

from CMBDetectionLib.probability.unet.network import build_unet


@pytest.fixture(scope="module")
def model():
    return build_unet()


def _of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_encoder_blocks_have_paper_filters_and_pooling(model):
    for level, width in enumerate((16, 32, 64, 128), start=1):
        convs = [model.get_layer(f"enc{level}_conv{n}") for n in (1, 2)]
        assert [c.filters for c in convs] == [width, width]
        assert all(c.kernel_size == (3, 3) for c in convs)
        assert model.get_layer(f"enc{level}_pool").pool_size == (2, 2)
        assert model.get_layer(f"enc{level}_drop").rate == pytest.approx(0.05)
    assert len(_of(model, layers.MaxPooling2D)) == 4
    assert len(_of(model, layers.Dropout)) == 4


def test_every_conv_is_followed_by_batchnorm_and_leaky_relu(model):
    convs = [c for c in _of(model, layers.Conv2D) if not isinstance(c, layers.Conv2DTranspose) and c.kernel_size == (3, 3)]
    assert len(convs) == 4 * 2 + 2 + 4 * 2  # encoder, bottleneck, decoder
    for conv in convs:
        bn = model.get_layer(conv.name.replace("conv", "bn"))
        act = model.get_layer(conv.name.replace("conv", "act"))
        assert isinstance(bn, layers.BatchNormalization)
        assert isinstance(act, layers.LeakyReLU) and act.negative_slope == pytest.approx(0.05)
        assert bn.input is conv.output and act.input is bn.output


def test_decoder_uses_stride_two_transposed_convs_and_skip_concatenation(model):
    ups = _of(model, layers.Conv2DTranspose)
    assert [u.filters for u in ups] == [128, 64, 32, 16]
    assert all(u.strides == (2, 2) and u.kernel_size == (3, 3) for u in ups)
    concats = _of(model, layers.Concatenate)
    assert len(concats) == 4
    for level in (1, 2, 3, 4):
        skip = model.get_layer(f"enc{level}_act2").output
        assert any(t is skip for t in model.get_layer(f"dec{level}_concat").input)


def test_sigmoid_output_and_fully_convolutional_input(model):
    assert model.input_shape == (None, None, None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    for size in (64, 256):
        out = np.asarray(model(np.random.default_rng(0).random((1, size, size, 1), dtype=np.float32), training=False))
        assert out.shape == (1, size, size, 1)
        assert out.min() >= 0 and out.max() <= 1
