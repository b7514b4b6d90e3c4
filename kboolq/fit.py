"""python -m kboolq.fit: train a classifier on the notebook's split and write a run directory."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from kboolq import tracking
from kboolq.cli import (
    add_source_arguments,
    add_threads_argument,
    add_verbose_argument,
    cache_dir,
    data_settings,
    load_inputs,
    run_command,
    run_info,
    verbosity,
    warn_about_data,
)
from kboolq.config import Config, DataSettings, add_config_arguments, config_from_args
from kboolq.evaluation import (
    evaluate_splits,
    format_table,
    predict_split,
)
from kboolq.files import remove_stale_temporaries, write_json
from kboolq.rundir import (
    MODEL_FILE,
    claim_output,
    clear_run,
    is_run,
    lock_output,
    recover_run,
    replace_run,
    staging_dir,
    write_info,
)
from kboolq.threads import set_threads
from kboolq.training import train_model


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.fit",
        description="Train a BoolQ yes/no classifier on train[:-valid_size], stop early on the "
        "validation split's balanced accuracy, and write RUN_DIR with model.keras, config.json, "
        "history.csv and metrics.json (valid, and test when the data has a test split).",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="RUN_DIR",
        help="run directory to write: a new or empty directory, or a kboolq run with --overwrite",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--wandb", action="store_true", help="log to Weights & Biases (off by default)")
    add_verbose_argument(p)
    add_source_arguments(p)
    add_threads_argument(p)
    add_config_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    config = config_from_args(args)
    settings = data_settings(args)
    with lock_output(args.out):
        recover_run(args.out)
        return fit(args, config, settings, args.out)


def fit(args: argparse.Namespace, config: Config, settings: DataSettings, run_dir: Path) -> int:
    """Everything is checked before RUN_DIR is touched; a finished run being replaced stays
    whole until its successor is complete (trained in a staging directory, then swapped in).
    A run that did not finish is this command's own leftover and is started over in place."""
    unfinished = is_run(run_dir) and not (run_dir / "metrics.json").exists()
    replacing = claim_output(run_dir, "run", is_run, args.overwrite or unfinished)
    inputs = load_inputs(settings, cache_dir(args))
    warn_about_data(inputs, config.batch_size)
    staged = replacing and not unfinished
    work = staging_dir(run_dir) if staged else run_dir
    if unfinished:
        print(f"{run_dir} holds a run that did not finish; starting it over")
        clear_run(run_dir)
    work.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(work)
    prepared = inputs.prepared
    print(
        f"data ready in {inputs.seconds:.1f} s{' (cached)' if inputs.from_cache else ''}; "
        f"T = {prepared.layout.steps}, vectors {inputs.glove.source} ({inputs.glove.dim}d)"
    )
    info = run_info(config, inputs)
    write_info(work, info)
    tracker, extra = tracking.start_tracking(
        args.wandb, {**config.to_dict(), **info.to_dict()}, name=run_dir.name
    )
    started = time.perf_counter()
    try:
        model, checkpoint = train_model(config, prepared, work, extra, verbose=verbosity(args))
    except KeyboardInterrupt:
        if staged:
            shutil.rmtree(work, ignore_errors=True)
            print(f"\ninterrupted: {run_dir} still holds the previous run", file=sys.stderr)
        else:
            saved = run_dir / MODEL_FILE
            where = f"kept in {saved}" if saved.exists() else "none saved yet"
            print(f"\ninterrupted: best model so far {where}", file=sys.stderr)
        raise
    seconds = time.perf_counter() - started
    reports = evaluate_splits(model, prepared.splits, prepared.table, config.batch_size)
    write_json(work / "metrics.json", reports)
    if staged:
        replace_run(work, run_dir)
    print(format_table(reports))
    print(
        f"best epoch {checkpoint.best_epoch} (valid balanced accuracy {checkpoint.best:.4f}); "
        f"trained {seconds:.0f} s; run written to {run_dir}"
    )
    if tracker is not None:
        valid = prepared.splits["valid"]
        scores = predict_split(model, valid, prepared.table, config.batch_size)
        tracking.log_final(tracker, reports, valid.labels, scores, run_dir / MODEL_FILE)
        tracker.finish()
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.fit")())
