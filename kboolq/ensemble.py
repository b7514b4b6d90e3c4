"""python -m kboolq.ensemble RUN_DIR RUN_DIR ... --out ENS_DIR: average the members' P(yes).

The ensemble is saved as one ordinary run directory (a single model.keras whose output is the
mean of its members), so kboolq.evaluate and kboolq.predict use it like any other run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras

from kboolq.cli import add_cache_argument, cache_dir, run_command
from kboolq.data import load_boolq
from kboolq.errors import UserError
from kboolq.evaluate import load_vectors
from kboolq.files import write_json
from kboolq.preprocess import encode
from kboolq.report import format_table
from kboolq.run import RunInfo, load_model, read_info, save_model, write_info
from kboolq.training import evaluate_splits


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.ensemble",
        description="Combine runs trained on the same data layout and vectors (e.g. different "
        "seeds or architectures) into one run directory whose model averages their "
        "probabilities; reports valid (and test) metrics of the ensemble.",
    )
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="member run directories")
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    add_cache_argument(p)
    return p


def check_compatible(infos: list[RunInfo], runs: list[Path]) -> None:
    first = infos[0]
    for info, run in zip(infos[1:], runs[1:], strict=True):
        if info.layout != first.layout:
            raise UserError(f"{run}: layout {info.layout} differs from {runs[0]}'s {first.layout}")
        if info.glove["fingerprint"] != first.glove["fingerprint"]:
            raise UserError(f"{run}: trained on other vectors than {runs[0]}")


def average(models: list[keras.Model]) -> keras.Model:
    shapes = {tensor.name: tensor.shape[1:] for tensor in models[0].inputs}
    inputs = {
        "vectors": keras.Input(shapes["vectors"], name="vectors"),
        "lengths": keras.Input((2,), dtype="int32", name="lengths"),
    }
    outputs = []
    for index, model in enumerate(models):
        model.name = f"member_{index}"
        outputs.append(model(inputs))
    return keras.Model(inputs, keras.layers.Average(name="p_yes")(outputs), name="ensemble")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if len(args.runs) < 2:
        raise UserError("an ensemble needs at least two RUN_DIRs")
    infos = [read_info(run) for run in args.runs]
    check_compatible(infos, args.runs)
    ensemble = average([load_model(run) for run in args.runs])
    info = infos[0]
    args.out.mkdir(parents=True, exist_ok=True)
    write_info(args.out, info)
    write_json(args.out / "members.json", {"members": [str(run.resolve()) for run in args.runs]})
    save_model(ensemble, args.out)
    boolq = load_boolq(info.data["source"], info.data["valid_size"])
    names = [name for name in ("valid", "test") if name in boolq.splits]
    glove = load_vectors(info, cache_dir(args))
    _, table, splits, _, _ = encode({n: boolq.splits[n] for n in names}, glove, info.layout)
    reports = evaluate_splits(load_model(args.out), splits, table, info.config.batch_size)
    write_json(args.out / "metrics.json", reports)
    print(format_table(reports))
    print(f"ensemble of {len(args.runs)} runs written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.ensemble")())
