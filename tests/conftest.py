"""Shared test set-up: fast mode, headless matplotlib, a private offline data directory."""
import os
import tempfile

os.environ.setdefault("GENLAB_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GENLAB_OFFLINE", "1")       # no download attempts from the suite
os.environ.setdefault("GENLAB_DATA", tempfile.mkdtemp(prefix="genlab-test-data-"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
