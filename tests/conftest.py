"""Shared fixtures. The hub is unreachable in tests: everything must load offline."""

import os

# Set before huggingface_hub is imported (it reads these once): no test may try the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir():
    """The tiny Qwen2.5-VL folder, built on first use into the cache (``$CHARTRVR_NB_CACHE`` or
    ``~/.cache/chartrvr_nb``) and reused by later sessions, as a user's smoke run reuses it."""
    from chartrvr_nb.tiny import build_tiny_model

    return build_tiny_model()
