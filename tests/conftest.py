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
