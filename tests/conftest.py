import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("GENLAB_TEST_THREADS", "1")))


@pytest.fixture
def tmp_run(tmp_path):
    """A fresh run directory."""
    return tmp_path / "run"
