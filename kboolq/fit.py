"""python -m kboolq.fit: train a classifier on the seed split and write a run directory."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kboolq.cli import add_source_arguments, load_inputs, run_command, run_info
from kboolq.config import add_config_arguments, config_from_args
from kboolq.errors import UserError
from kboolq.files import write_json
from kboolq.report import format_table
from kboolq.run import CONFIG_FILE, MODEL_FILE, write_info
from kboolq.training import evaluate_splits, predict, train_model

RUN_FILES = (MODEL_FILE, CONFIG_FILE, "history.csv", "metrics.json", "report.json")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.fit",
        description="Train a BoolQ yes/no classifier on train[:-valid_size], stop early on the "
        "validation split's balanced accuracy, and write RUN_DIR with model.keras, config.json, "
        "history.csv and metrics.json (valid, and test when the data has a test split).",
    )
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--wandb", action="store_true", help="log to Weights & Biases (off by default)")
    p.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="Keras output: 0 silent, 1 progress bar, 2 one line per epoch (default: 1)",
    )
    add_source_arguments(p)
    add_config_arguments(p)
    return p


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir}: exists and is not a directory")
    if (run_dir / CONFIG_FILE).exists():
        finished = (run_dir / "metrics.json").exists()
        if finished and not overwrite:
            raise UserError(f"--out {run_dir}: already holds a run; pass --overwrite to replace it")
        if not finished:
            print(f"{run_dir} holds a run that did not finish; starting it over")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        for plot in run_dir.glob("*.png"):
            plot.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = config_from_args(args)
    run_dir: Path = args.out
    prepare_run_dir(run_dir, args.overwrite)
    inputs = load_inputs(args)
    prepared = inputs.prepared
    print(
        f"data ready in {inputs.seconds:.1f} s{' (cached)' if inputs.from_cache else ''}; "
        f"T = {prepared.layout.steps}, vectors {inputs.glove.source} ({inputs.glove.dim}d)"
    )
    info = run_info(config, inputs)
    write_info(run_dir, info)
    tracker = None
    extra = []
    if args.wandb:
        from kboolq import tracking

        tracker = tracking.start({**config.to_dict(), **info.to_dict()}, name=run_dir.name)
        extra.append(tracking.EpochLogger(tracker))
    started = time.perf_counter()
    try:
        model, checkpoint = train_model(config, prepared, run_dir, extra, verbose=args.verbose)
    except KeyboardInterrupt:
        saved = run_dir / MODEL_FILE
        where = f"kept in {saved}" if saved.exists() else "none saved yet"
        print(f"\ninterrupted: best model so far {where}", file=sys.stderr)
        raise
    seconds = time.perf_counter() - started
    reports = evaluate_splits(model, prepared.splits, prepared.table, config.batch_size)
    write_json(run_dir / "metrics.json", reports)
    print(format_table(reports))
    print(
        f"best epoch {checkpoint.best_epoch} (valid balanced accuracy {checkpoint.best:.4f}); "
        f"trained {seconds:.0f} s; run written to {run_dir}"
    )
    if tracker is not None:
        from kboolq import tracking

        valid = prepared.splits["valid"]
        scores = predict(model, valid, prepared.table, config.batch_size)
        tracking.log_final(tracker, reports, valid.labels, scores, run_dir / MODEL_FILE)
        tracker.finish()
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.fit")())
