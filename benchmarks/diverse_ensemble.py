"""Diverse ensembles over selection seeds: for each seed S, the candidates are one run of each
configuration trained with seed S; `kboolq.ensemble --select`'s forward selection picks members
on valid, and the chosen ensemble is scored on valid and test. Reported as mean +- sample std
over the selection seeds, beside the average of all candidates and each configuration alone.

    python benchmarks/diverse_ensemble.py --seeds 0,1 \\
        --pool 'runs/features3/members/seed_{s}' --pool 'runs/esim128/members/seed_{s}'

Runs are encoded once, the first candidate's way, as `kboolq.ensemble` does (it refuses
candidates with another layout, vectors or tokenization).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from run_scores import average_report, format_means, scores_of

from kboolq.ensemble import greedy_select
from kboolq.evaluation import SPREAD_METRICS
from kboolq.threads import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pool",
        action="append",
        required=True,
        help="a configuration's run directory with {s} where the seed goes (repeat: 2 or more)",
    )
    parser.add_argument("--seeds", required=True, help="selection seeds, comma-separated")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    args = parser.parse_args()
    set_threads(args.threads)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    selected, everything, alone = [], [], {pool: [] for pool in args.pool}
    for seed in seeds:
        runs = [Path(pool.format(s=seed)) for pool in args.pool]
        labels, scores = scores_of(runs)
        chosen = greedy_select(labels["valid"], [member["valid"] for member in scores])
        selected.append(average_report(labels, [scores[i] for i in chosen]))
        everything.append(average_report(labels, scores))
        for pool, member in zip(args.pool, scores, strict=True):
            alone[pool].append(average_report(labels, [member]))
        cells = {
            split: " ".join(f"{selected[-1][split][m]:.3f}" for m in SPREAD_METRICS)
            for split in labels
        }
        print(f"seed {seed}: selected {', '.join(str(runs[i]) for i in chosen)} -> {cells}")
    for pool in args.pool:
        print(format_means(f"alone: {pool}", alone[pool]))
    print(format_means("all candidates averaged", everything))
    print(format_means("selected on valid (kboolq.ensemble --select)", selected))


if __name__ == "__main__":
    main()
