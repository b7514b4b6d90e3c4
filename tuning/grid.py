"""python -m tuning.grid: the notebook's hyperparameter grid with KerasTuner, resumable.

Every trial trains exactly as kboolq.fit does (same config dataclass, model builder, early
stopping on valid balanced accuracy and best-only checkpoint) into its own run directory, so
the best trial's directory is copied out as GRID_DIR/best, a normal run for evaluate/predict.
"""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from kboolq.cli import (
    add_source_arguments,
    add_threads_argument,
    add_verbose_argument,
    cache_dir,
    data_settings,
    run_command,
    verbosity,
)
from kboolq.config import Config, word_chars
from kboolq.errors import UserError
from kboolq.files import write_json
from kboolq.inputs import load_inputs, run_info, warn_about_data
from kboolq.runs.outputs import claim_output, lock_output
from kboolq.threads import set_threads
from tuning.auth import chief_secret, read_ca, read_tls, worker_secret
from tuning.axes import DEFAULT_GRID, FIELDS, grid_size, settings_from_args
from tuning.distributed import GridClient, Role, role_from, serve
from tuning.launch import Launcher, follow_launcher
from tuning.progress import duration
from tuning.record import RECORD, check_same_grid, grid_record, is_grid, record_changes
from tuning.results import finish
from tuning.tuner import build_tuner
from tuning.uploads import trial_check

__all__ = ["DEFAULT_GRID", "main", "parser", "settings_from_args"]

DEFAULT_LEASE = 120.0  # seconds a worker may stay silent before its trial is handed elsewhere
DEFAULT_CHIEF_TIMEOUT = 600.0  # the chief loads the data before it serves: give it time


def grid_chars(base: Config, grid: dict[str, list[Any]]) -> int:
    """Characters per word the grid's shared data carries: some when any trial reads --chars."""
    return word_chars([base.chars, *grid.get("chars", [])])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tuning.grid",
        description="Grid search with KerasTuner over any hyperparameters of the --arch model "
        "(by default the notebook's grid: hidden x dropout x lr x weight decay, 81 trials), each "
        "trial early-stopped on valid balanced accuracy. Writes GRID_DIR/trials.csv (every grid "
        "point once, best first) and GRID_DIR/best (a normal run directory for "
        "kboolq.evaluate/predict). A killed grid resumes where it stopped when run again with "
        "the same arguments. With --chief/--worker the trials run on several processes or "
        "machines at once (see README, 'Several trials at once'); every call to the chief "
        "carries the grid secret ($KBOOLQ_GRID_SECRET, else GRID_DIR/grid.secret, which the "
        "chief writes).",
    )
    p.add_argument("--out", type=Path, required=True, metavar="GRID_DIR", help="grid directory")
    axes = p.add_argument_group(
        "hyperparameters: every one may be a grid axis (V,V,... makes an axis; one value fixes "
        "it, except for the notebook's four axes, which stay axes of that one value)"
    )
    for name, f in FIELDS.items():
        default = ",".join(map(str, DEFAULT_GRID.get(name, [f.default])))
        kind = "axis" if name in DEFAULT_GRID else "fixed"
        choices = f.metadata.get("choices")
        axes.add_argument(
            f.metadata["flag"],
            dest=f"axis_{name}",
            metavar="V,V,..." if not choices else "{" + ",".join(choices) + "},...",
            help=f"{f.metadata['help']} (default: {kind} {default})",
        )
    p.add_argument(
        "--grid",
        type=Path,
        help="TOML or JSON file of axis = [values], axes named by field or flag (e.g. "
        "hidden = [128, 256]; arch = ['bigru', 'attention']); flags win",
    )
    p.add_argument("--fresh", action="store_true", help="discard finished trials and start over")
    p.add_argument(
        "--wandb", action="store_true", help="log each trial as a W&B run (metrics only)"
    )
    dist = p.add_argument_group(
        "many workers (KerasTuner's chief/worker mode; KERASTUNER_ORACLE_IP, "
        "KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID work too)"
    )
    dist.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run the grid on N local worker processes at once, in this one command: it "
        "starts a chief on a free 127.0.0.1 port and N workers (each with --threads / N "
        "threads, or all cores / N; GPUs from CUDA_VISIBLE_DEVICES round-robin, several "
        "workers may share one), shows all their output tagged by process, replaces a worker "
        "that dies, and stops them all on Ctrl-C. 1: one process, no chief (default: 1)",
    )
    dist.add_argument(
        "--chief",
        metavar="HOST:PORT",
        help="be the chief: hand out grid points to workers on HOST:PORT, trains nothing, and "
        "write trials.csv and best/ when every point is done",
    )
    dist.add_argument(
        "--worker",
        metavar="HOST:PORT",
        help="be a worker: train the grid points the chief at HOST:PORT hands out, with the "
        "same other arguments as the chief",
    )
    dist.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="chief: serve over TLS with this certificate (chain), for networks that are not "
        "private; workers then need --tls-ca (default: no TLS; the grid secret is still checked)",
    )
    dist.add_argument(
        "--tls-key", type=Path, metavar="PEM", help="chief: the private key of --tls-cert"
    )
    dist.add_argument(
        "--tls-ca",
        type=Path,
        metavar="PEM",
        help="worker: reach the chief over TLS, trusting the certificate authority in this file "
        "(the chief's own certificate, if self-signed)",
    )
    dist.add_argument(
        "--lease",
        type=float,
        default=DEFAULT_LEASE,
        metavar="SECONDS",
        help="chief: a trial whose worker sends nothing (it sends a heartbeat every "
        "min(10, lease/4) s) for this long is handed to another worker "
        f"(default: {DEFAULT_LEASE:g})",
    )
    dist.add_argument(
        "--chief-timeout",
        type=float,
        default=DEFAULT_CHIEF_TIMEOUT,
        metavar="SECONDS",
        help="worker: give up with an error when the chief cannot be reached for this long "
        f"(default: {DEFAULT_CHIEF_TIMEOUT:g})",
    )
    add_verbose_argument(p)
    add_source_arguments(p)
    add_threads_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    role = role_from(args.chief, args.worker)
    follow_launcher()
    if args.workers > 1:
        if role is not None:
            raise UserError("--workers starts its own chief and workers: drop --chief/--worker")
        settings_from_args(args)  # flag errors before any process starts
        argv = sys.argv[1:] if argv is None else list(argv)
        return Launcher(argv, args.workers, args.threads).run()
    set_threads(args.threads)
    base, grid = settings_from_args(args)
    if not args.lease > 0 or not args.chief_timeout > 0:
        raise UserError("--lease and --chief-timeout must be positive numbers of seconds")
    tls_flags = args.tls_cert or args.tls_key or args.tls_ca
    if role is None and tls_flags:
        raise UserError("--tls-cert, --tls-key and --tls-ca are for a grid on --chief/--worker")
    if role is not None and role.kind == "worker":
        return run_worker(args, role, base, grid)
    if args.tls_ca:
        raise UserError("--tls-ca is a worker's; the chief takes --tls-cert and --tls-key")
    tls = read_tls(args.tls_cert, args.tls_key) if role is not None else None
    grid_dir: Path = args.out
    settings = data_settings(args)
    with lock_output(grid_dir):
        claim_output(grid_dir, "grid", is_grid, overwrite=True)  # its own grid: resumed
        # once per grid, shared by every trial (with characters when one reads --chars)
        inputs = load_inputs(settings, cache_dir(args), grid_chars(base, grid))
        warn_about_data(inputs, base.batch_size)
        info = run_info(base, inputs)
        record = grid_record(info, grid)
        if not args.fresh:
            check_same_grid(grid_dir, record)
        grid_dir.mkdir(parents=True, exist_ok=True)
        write_json(grid_dir / RECORD, record)
        total = grid_size(grid)
        print(
            f"grid of {total} trials over {', '.join(grid)}; data ready in {inputs.seconds:.1f} s"
        )
        tuner = build_tuner(
            base, grid, inputs.prepared, info, grid_dir,
            role=None if role is None else "chief", wandb=args.wandb, verbose=verbosity(args),
            lease=args.lease, fresh=args.fresh,
        )  # fmt: skip
        if role is None:
            tuner.search()
        else:
            tuner.save()
            secret = chief_secret(grid_dir)
            cpu, wall = time.process_time(), time.monotonic()
            requests = serve(
                tuner.oracle,
                role,
                record,
                heartbeat=min(10.0, args.lease / 4),
                secret=secret,
                tls=tls,
                accept=trial_check(tuner.hypermodel.config, tuner.hypermodel.prepared),
            )
            print(
                f"grid chief: all {total} points done; served {sum(requests.values())} requests "
                f"({requests.get('CreateTrial', 0)} trial requests, "
                f"{requests.get('Heartbeat', 0)} heartbeats) in "
                f"{duration(time.monotonic() - wall)} using "
                f"{time.process_time() - cpu:.2f} s of CPU time",
                flush=True,
            )
        return finish(tuner, grid, grid_dir, inputs.prepared, base)


def run_worker(
    args: argparse.Namespace, role: Role, base: Config, grid: dict[str, list[Any]]
) -> int:
    """Train what the chief hands out until it says the grid is done. The worker's trial
    directories go under its own --out (the chief's, on a shared filesystem); each finished
    one is also sent to the chief."""
    grid_dir: Path = args.out
    if args.tls_cert or args.tls_key:
        raise UserError("--tls-cert and --tls-key are the chief's; a worker takes --tls-ca")
    secret, ca = worker_secret(grid_dir), read_ca(args.tls_ca)
    with lock_output(grid_dir / f".{role.tuner_id}"):  # a worker per id; beside the chief
        claim_output(grid_dir, "grid", is_grid, overwrite=True)
        inputs = load_inputs(data_settings(args), cache_dir(args), grid_chars(base, grid))
        info = run_info(base, inputs)
        record = grid_record(info, grid)
        tuner = build_tuner(
            base, grid, inputs.prepared, info, grid_dir,
            role="worker", wandb=args.wandb, verbose=verbosity(args),
        )  # fmt: skip
        local = getattr(tuner.oracle, "_oracle", tuner.oracle)  # KerasTuner's client wraps it
        client = GridClient(local, role, args.chief_timeout, secret, ca)
        tuner.oracle, tuner.client, tuner.tuner_id = client, client, role.tuner_id
        chief = client.record()
        changed = record_changes(chief["record"], record, same_axes=True)
        if changed:
            raise UserError(
                f"--worker {role.address}: the chief runs another grid ({'; '.join(changed)}); "
                "start every process with the same arguments"
            )
        tuner.heartbeat_interval = chief["heartbeat"]
        print(f"grid worker {role.tuner_id}: joined the chief at {role.address}", flush=True)
        tuner.search()
        print(
            f"grid worker {role.tuner_id}: the grid is done; ran {tuner.ran} trials, waited "
            f"{client.idle_asks} times for a free grid point",
            flush=True,
        )
        return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "tuning.grid")())
