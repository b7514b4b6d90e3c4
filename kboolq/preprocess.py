"""python -m kboolq.preprocess: load, tokenize, encode and cache the data; print its report."""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import sys

from kboolq.cli import (
    add_source_arguments,
    add_threads_argument,
    cache_dir,
    data_settings,
    run_command,
)
from kboolq.data.layout import report
from kboolq.inputs import load_inputs
from kboolq.threads import set_threads


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.preprocess",
        description="Load BoolQ and GloVe, tokenize, encode and cache every split, then print "
        "rows per split, q_max, p_max, T, the out-of-vocabulary report and the time taken.",
    )
    add_source_arguments(p)
    add_threads_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    inputs = load_inputs(data_settings(args), cache_dir(args))
    print(report(inputs.prepared))
    how = "from cache" if inputs.from_cache else "cold"
    print(f"seconds: {inputs.seconds:.2f} ({how}); fingerprint {inputs.prepared.fingerprint[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.preprocess")())
