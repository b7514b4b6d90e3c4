"""Test setup: a private KERAS_HOME (set before keras is imported), fixed seeds, --run-slow, and
the fixtures every module shares (one trained run per session, a copy per test)."""

import os
import tempfile

os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="kboolq-keras-home-")

import kboolq  # noqa: E402, F401, I001  (selects the backend before keras is imported)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from helpers import copy_run, fit_fixture  # noqa: E402

# On a GPU, cuDNN would round GRU inputs to TF32 (torch's default there): the tests compare
# float32 computations, so they run in float32 everywhere. See benchmarks/cuda_check.py.
torch.backends.cudnn.allow_tf32 = False


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny run fitted once for the whole session: (run directory, cache directory). Never
    changed by a test: a test that writes into a run uses `run`, its own copy."""
    root = tmp_path_factory.mktemp("trained")
    assert fit_fixture(root / "run", root / "cache") == 0
    return root / "run", root / "cache"


@pytest.fixture
def run(trained, tmp_path):
    """This test's own copy of the session's trained run, and the shared cache."""
    return copy_run(trained[0], tmp_path / "run"), trained[1]


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"
