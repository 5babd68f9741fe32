"""Fixtures of the runs over many images."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread_per_module():
    """The test machine's cores are shared (Dask workers, a training beside the suite): torch on
    one thread in every module here, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
