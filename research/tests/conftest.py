"""The product tests' fixtures, for the studies' tests."""

from tests.conftest import first_stage, tiny_config, tiny_images  # noqa: F401
