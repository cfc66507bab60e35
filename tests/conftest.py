import os

import pytest
import torch

# Unit tests run at smoke scale unless a test sets the scale itself.
os.environ.setdefault("HITCHHIKER_SCALE", "smoke")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def pytest_configure(config):
    # Registered here, not in pyproject.toml, so that `make core` (run with no ini file, from the
    # installed wheel) knows the marker too.
    config.addinivalue_line(
        "markers", "slow: long statistical or training tests (deselect with -m 'not slow')")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
    yield
