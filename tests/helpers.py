"""What the tests share: the fixture data, a fit on it, a run's copy, a free port, small vectors
and rows. Fixtures (a trained run, its per-test copy) are in conftest.py."""

import shutil
import socket
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
FIXTURE_BOOLQ = DATA / "boolq"
FIXTURE_GLOVE = DATA / "glove.txt"
FIXTURE_VALID_SIZE = 40
SOURCES = [
    "--data", str(FIXTURE_BOOLQ), "--glove", str(FIXTURE_GLOVE),
    "--valid-size", str(FIXTURE_VALID_SIZE),
]  # fmt: skip
TINY = ("--hidden", "4", "--epochs", "1")  # the smallest model that trains: seconds a fit


def fixture_args(out, cache, *extra):
    """Command-line arguments for fit or grid on the fixture data, quiet, into `out`."""
    return [*SOURCES, "--cache-dir", str(cache), "--out", str(out), "--verbose", "0", *extra]


def fit_fixture(out, cache, *extra) -> int:
    """kboolq.fit on the fixture data into `out`, as the command runs (its exit status, errors
    printed): a TINY model unless `extra` says otherwise."""
    from kboolq import fit
    from kboolq.cli import run_command

    return run_command(fit.main, "kboolq.fit")(fixture_args(out, cache, *TINY, *extra))


def answers(run_dir, cache, rows=8) -> np.ndarray:
    """The run's P(yes) for the first `rows` fixture train rows, checked to be probabilities: a
    run that does not load, or answers NaN or outside [0, 1], fails here."""
    from kboolq.data.boolq import read_rows
    from kboolq.runs.api import load_run

    p_yes = load_run(run_dir, cache).predict(read_rows(FIXTURE_BOOLQ / "train.jsonl")[:rows])
    assert p_yes.shape == (rows,) and np.isfinite(p_yes).all()
    assert ((p_yes >= 0) & (p_yes <= 1)).all(), p_yes
    return p_yes


def copy_run(run_dir, where) -> Path:
    """A copy of a run directory at `where` (members and all)."""
    shutil.copytree(run_dir, where)
    return Path(where)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_glove(words, dim=2):
    """A GloVe table over `words` whose vectors are 1, 2, 3, ... in order (distinct rows)."""
    from kboolq.data.glove import Glove

    vectors = np.arange(1, len(words) * dim + 1, dtype=np.float32).reshape(len(words), dim)
    return Glove(list(words), vectors, "test", "fp")


def make_row(question, passage, label=1, where="x:1"):
    from kboolq.data.boolq import Row

    return Row(question, passage, label, where)


def start_server(run_dir, cache, port):
    """`python -m kboolq.serve RUN_DIR` in a new process on 127.0.0.1:`port`, once /health
    answers (at most 120 s); the caller terminates it. Its stdout and stderr are pipes."""
    import subprocess
    import sys
    import time
    import urllib.request

    server = subprocess.Popen(
        [sys.executable, "-m", "kboolq.serve", str(run_dir), "--port", str(port),
         "--cache-dir", str(cache)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return server
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
            time.sleep(0.3)


def spacy_folder(folder, table, keys) -> Path:
    """A spaCy vocab folder as spaCy writes one: `table` rows, and `keys` {key: row}."""
    from spacy.vectors import Vectors
    from spacy.vocab import Vocab

    vocab = Vocab()
    vocab.vectors = Vectors(data=np.asarray(table, dtype=np.float32))
    for key, row in keys.items():
        vocab.vectors.add(vocab.strings.add(key), row=row)
    vocab.to_disk(folder)
    return Path(folder)
