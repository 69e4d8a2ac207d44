"""pytest fixtures; the helpers they build on live in tests/helpers.py."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tests.helpers import TINY, smooth_images  # noqa: E402


@pytest.fixture
def tiny_config():
    return TINY


@pytest.fixture
def tiny_images():
    return smooth_images(64)


@pytest.fixture(scope="session")
def first_stage():
    """A tiny model trained for two epochs, and its images (read-only: shared)."""
    import keras

    from cvae.model.vae import VAE

    keras.utils.set_random_seed(0)
    model = VAE(TINY, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = smooth_images(64)
    model.fit(images, epochs=2, batch_size=16, verbose=0)
    return model, images
