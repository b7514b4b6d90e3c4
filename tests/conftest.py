"""Test setup: a private KERAS_HOME (set before keras is imported), fixed seeds, fixture paths."""

import os
import tempfile
from pathlib import Path

os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="kboolq-keras-home-")

import kboolq  # noqa: E402, F401, I001  (selects the backend before keras is imported)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from kboolq import fit  # noqa: E402

# On a GPU, cuDNN would round GRU inputs to TF32 (torch's default there): the tests compare
# float32 computations, so they run in float32 everywhere. See benchmarks/cuda_check.py.
torch.backends.cudnn.allow_tf32 = False

DATA = Path(__file__).parent / "data"
FIXTURE_BOOLQ = DATA / "boolq"
FIXTURE_GLOVE = DATA / "glove.txt"
FIXTURE_VALID_SIZE = 40
SOURCES = [
    "--data", str(FIXTURE_BOOLQ), "--glove", str(FIXTURE_GLOVE),
    "--valid-size", str(FIXTURE_VALID_SIZE),
]  # fmt: skip


def fixture_args(out, cache, *extra):
    """Command-line arguments for fit or grid on the fixture data, quiet, into `out`."""
    return [*SOURCES, "--cache-dir", str(cache), "--out", str(out), "--verbose", "0", *extra]


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run fitted once per test module: (run directory, cache directory). Tests that
    change the run copy it first."""
    root = tmp_path_factory.mktemp("trained")
    args = fixture_args(root / "run", root / "cache", "--hidden", "4", "--epochs", "1")
    assert fit.main(args) == 0
    return root / "run", root / "cache"


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


def small_glove(words, dim=2):
    """A GloVe table over `words` whose vectors are 1, 2, 3, ... in order (distinct rows)."""
    from kboolq.data.glove import Glove

    vectors = np.arange(1, len(words) * dim + 1, dtype=np.float32).reshape(len(words), dim)
    return Glove(list(words), vectors, "test", "fp")


def make_row(question, passage, label=1, where="x:1"):
    from kboolq.data.boolq import Row

    return Row(question, passage, label, where)
