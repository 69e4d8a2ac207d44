"""Architecture options of the configuration: residual blocks and the
full-resolution output stage, and the Laplacian-pyramid loss term."""

import numpy as np
import pytest

from cvae.model import losses
from cvae.model.config import VAEConfig
from cvae.model.vae import VAE

RESIDUAL = VAEConfig(image_size=16, filters=(8, 16), dense_units=(), latent_dim=4,
                     block="residual", encoder_extra_convs=2, decoder_extra_convs=2,
                     output_filters=4, likelihood="gaussian", decoder_scale="learned")


def test_residual_blocks_add_their_input():
    model = VAE(RESIDUAL)
    adds = [layer for layer in model.encoder.layers + model.decoder.layers
            if layer.__class__.__name__ == "Add"]
    # One residual block per stage in each network, and one at full resolution.
    assert len(adds) == 2 + 1 + 1
    out = model.decode(np.zeros((2, 4), np.float32))
    assert out.shape == (2, 16, 16, 3)
    assert model.decoder.layers[-2].__class__.__name__ == "Conv2D"


def test_plain_config_builds_the_same_layers_as_before():
    plain = VAE(VAEConfig(image_size=16, filters=(8, 16), dense_units=(), latent_dim=4,
                          decoder_extra_convs=1))
    names = [layer.__class__.__name__ for layer in plain.decoder.layers]
    assert "Add" not in names and names[-2] == "Conv2DTranspose"


def test_pyramid_loss_is_zero_free_of_blur_and_counts_fine_detail():
    rng = np.random.default_rng(0)
    images = rng.random((4, 32, 32, 3)).astype(np.float32)
    blurred = images.copy()
    blurred[:, 1:-1, 1:-1] = (images[:, :-2, 1:-1] + images[:, 2:, 1:-1]
                              + images[:, 1:-1, :-2] + images[:, 1:-1, 2:]) / 4
    # The same mean squared error as the blur, spread as a smooth offset.
    mse = np.mean((images - blurred) ** 2)
    shifted = np.clip(images + np.sqrt(mse), 0, 1)
    blur_loss = np.asarray(losses.pyramid_loss(images, blurred))
    shift_loss = np.asarray(losses.pyramid_loss(images, shifted))
    assert blur_loss.shape == (4,)
    # Each level's error is measured against its own scale, so the loss is a
    # sum of log scales: lower for a perfect reconstruction than for either.
    perfect = np.asarray(losses.pyramid_loss(images, images + 1e-3 * rng.random(images.shape)))
    assert np.all(perfect < blur_loss) and np.all(perfect < shift_loss)


def test_pyramid_weight_enters_the_training_loss():
    from tests.helpers import smooth_images

    images = smooth_images(8)
    without = VAE(RESIDUAL, seed=0)
    with_pyramid = VAE(RESIDUAL.replace(pyramid_weight=1.0), seed=0)
    with_pyramid.set_weights(without.get_weights())
    terms = [model.objective(images / 255.0, model(images), training=False)
             for model in (without, with_pyramid)]
    assert not np.isclose(float(terms[0]["reconstruction_loss"]),
                          float(terms[1]["reconstruction_loss"]))


@pytest.mark.parametrize("field, value", [("block", "dense"), ("output_filters", -1),
                                          ("pyramid_weight", -0.5),
                                          ("second_stage_units", (0,))])
def test_bad_architecture_options_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        RESIDUAL.replace(**{field: value})


def test_the_v2_preset_is_the_studys_residual_design():
    from cvae.model.config import get_preset

    v2 = get_preset("faces-v2")
    assert (v2.block, v2.normalization, v2.output_filters, v2.beta) == ("residual", "none", 16, 1.0)
    small = v2.replace(image_size=32, filters=(8, 16), latent_dim=4)
    model = VAE(small)
    assert model.decode(np.zeros((1, 4), np.float32)).shape == (1, 32, 32, 3)
