"""The best K-member mix of several kinds of runs (architectures x vectors), chosen on valid: the
"best 5- and 10-member mix" of docs/results.md.

    python benchmarks/best_mix.py --pool bigru-glove=RUN,RUN,... --pool esim-spacy=RUN,... \\
        [--sizes 5,10] [--top 5] [--max-draws 200] [--also 3,2]

Each pool is one kind of run (its seeds). A mix of size K takes c_i runs from pool i (the c_i sum
to K); every such composition is scored as the mean over its draws (each choice of which runs of
each pool; at most --max-draws, drawn at random with a fixed seed) of the members' mean P(yes).
The compositions are ranked by mean valid balanced accuracy; the top ones are printed as Markdown
rows, valid and pseudo-test mean +- std over the draws, with the members' summed training time
(from each run's card, mean over the draws); each --also composition below the top is printed
after them with its rank. Draws share members, so their std understates the spread of
independent ensembles. Runs may be kept runs (benchmarks/keep_scores.py).
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

import numpy as np
from run_scores import average_report, markdown_row, scores_of

from kboolq.evaluation import SPREAD_METRICS
from kboolq.runs.card import card_seconds
from kboolq.threads import set_threads


def train_seconds(run: Path) -> float:
    """The run's training time from its card (NaN when the card does not say)."""
    seconds = card_seconds(run)
    return float("nan") if seconds is None else seconds


def compositions(sizes: list[int], k: int) -> list[tuple[int, ...]]:
    """Every (c_1, ..., c_G) with 0 <= c_i <= sizes[i] and sum k."""
    ranges = [range(min(size, k) + 1) for size in sizes]
    return [c for c in itertools.product(*ranges) if sum(c) == k]


def draws_of(pools: list[list[int]], counts: tuple[int, ...], limit: int) -> list[tuple[int, ...]]:
    """Member indices of each draw of the composition (at most `limit`, a fixed random sample)."""
    parts = [list(itertools.combinations(pool, c)) for pool, c in zip(pools, counts, strict=True)]
    every = [sum(chosen, ()) for chosen in itertools.product(*parts)]
    return random.Random(0).sample(every, limit) if len(every) > limit else every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pool",
        action="append",
        required=True,
        metavar="NAME=RUN,RUN,...",
        help="one kind of member and its kept or finished runs; repeat per kind",
    )
    parser.add_argument("--sizes", default="5,10", help="mix sizes K, comma-separated")
    parser.add_argument("--top", type=int, default=5, help="compositions printed per size")
    parser.add_argument("--max-draws", type=int, default=200, help="draws per composition")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="C1,C2,...",
        help="a composition (members per pool, in --pool order) printed with its rank even "
        "when it is not in the top, e.g. today's --seeds make-up; repeatable",
    )
    args = parser.parse_args()
    set_threads(1)
    names, runs, pools = [], [], []
    for given in args.pool:
        name, _, listed = given.partition("=")
        members = [Path(run) for run in listed.split(",") if run]
        names.append(name)
        pools.append(list(range(len(runs), len(runs) + len(members))))
        runs += members
    sizes = [int(k) for k in args.sizes.split(",")]
    held = [len(pool) for pool in pools]
    wanted = [parse_counts(text, held, sizes, parser) for text in args.also]
    labels, scores = scores_of(runs)
    seconds = [train_seconds(run) for run in runs]
    splits = ("valid", "pseudo-test")
    header = " | ".join(f"{split} {m}" for split in splits for m in SPREAD_METRICS)
    valid = np.stack([member["valid"] for member in scores])
    for k in sizes:
        print(f"\n| {k} members: " + ", ".join(names) + f" | draws | {header} | train s |")
        print("|---" * (3 + 2 * len(SPREAD_METRICS)) + "|")
        ranked = []
        for counts in compositions(held, k):
            draws = draws_of(pools, counts, args.max_draws)
            mean = np.mean([balanced_accuracy(labels["valid"], valid[list(d)]) for d in draws])
            ranked.append((mean, counts, draws))
        ranked.sort(key=lambda item: -item[0])
        for rank, (_, counts, draws) in enumerate(ranked, start=1):
            label = " + ".join(map(str, counts))
            if rank > args.top and counts not in wanted:
                continue
            if rank > args.top:
                label = f"{label} (rank {rank} of {len(ranked)})"
            reports = [average_report(labels, [scores[i] for i in draw]) for draw in draws]
            time = sum(sum(seconds[i] for i in draw) for draw in draws) / len(draws)
            print(markdown_row(label, reports, f"{time:.0f}"))


def balanced_accuracy(labels: np.ndarray, members: np.ndarray) -> float:
    """The balanced accuracy of the members' (rows: members) mean P(yes), as binary_report
    scores it, without its other metrics: the ranking scores thousands of draws."""
    predicted = np.mean(members, axis=0) >= 0.5
    actual = np.asarray(labels).ravel() >= 0.5
    recalls = [
        float(np.mean(predicted[actual == cls] == cls)) if np.any(actual == cls) else 0.0
        for cls in (False, True)
    ]
    return float(np.mean(recalls))


def parse_counts(
    text: str, held: list[int], sizes: list[int], parser: argparse.ArgumentParser
) -> tuple[int, ...]:
    """--also's "3,2,0" as (3, 2, 0): one count per pool (`held`: the runs each pool holds),
    summing to one of --sizes; else a usage error naming the flag, not a composition silently
    never printed."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        parser.error(f"--also {text}: give one whole number per pool, comma-separated")
    if len(counts) != len(held) or min(counts) < 0:
        parser.error(f"--also {text}: give {len(held)} counts (one per --pool), none negative")
    if any(c > n for c, n in zip(counts, held, strict=True)):
        parser.error(f"--also {text}: more runs than a pool holds ({', '.join(map(str, held))})")
    if sum(counts) not in sizes:
        parser.error(f"--also {text}: {sum(counts)} members, not one of --sizes")
    return counts


if __name__ == "__main__":
    main()
