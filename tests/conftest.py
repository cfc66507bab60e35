import os

import pytest
import torch

# Unit tests run at smoke scale unless a test sets the scale itself.
os.environ.setdefault("HITCHHIKER_SCALE", "smoke")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
    yield
