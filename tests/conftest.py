"""Shared test set-up: keep every cache inside a temp dir and never reach for a model hub.

The tests mirror the packages (``tests/<package>/test_*.py``); test file names are unique across
the folders, and every folder is on ``sys.path`` so that a test can import a helper of another
(``from test_complete import use_tiny_classifier``), as pytest's own "prepend" mode does for one.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _folder in sorted(p for p in _HERE.iterdir() if p.is_dir() and any(p.glob("test_*.py"))):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="tio2fiji-mpl-"))
os.environ.setdefault("MPLBACKEND", "Agg")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"


@pytest.fixture(scope="session")
def example_images():
    """The bundled BAM SEM images (shipped with the repository, CC BY-NC-ND 4.0)."""
    images = sorted((EXAMPLES / "SEM").glob("*.tif"))
    assert images, f"bundled example images missing in {EXAMPLES}/SEM"
    return images


@pytest.fixture(scope="session")
def example_masks():
    masks = sorted((EXAMPLES / "masks").glob("*_m.tif"))
    assert masks, f"bundled example masks missing in {EXAMPLES}/masks"
    return masks


@pytest.fixture(scope="module")
def one_torch_thread_module():
    """torch on one thread for a whole test module (Dask workers, a training beside the suite),
    restored afterwards: ``pytestmark = pytest.mark.usefixtures("one_torch_thread_module")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (a second core stays free), restored afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
