"""The best K-member mix of several kinds of runs (architectures x vectors), chosen on valid: the
"best 5- and 10-member mix" of docs/results.md.

    python benchmarks/best_mix.py --pool bigru-glove=RUN,RUN,... --pool esim-spacy=RUN,... \\
        [--sizes 5,10] [--top 5] [--max-draws 200]

Each pool is one kind of run (its seeds). A mix of size K takes c_i runs from pool i (the c_i sum
to K); every such composition is scored as the mean over its draws (each choice of which runs of
each pool; at most --max-draws, drawn at random with a fixed seed) of the members' mean P(yes).
The compositions are ranked by mean valid balanced accuracy; the top ones are printed as Markdown
rows, valid and pseudo-test mean +- std over the draws, with the members' summed training time
(from each run's card, mean over the draws). Draws share members, so their std understates the
spread of independent ensembles. Runs may be kept runs (benchmarks/keep_scores.py).
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

from run_scores import average_report, markdown_row, scores_of

from kboolq.evaluation import SPREAD_METRICS, spread
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
    args = parser.parse_args()
    set_threads(1)
    names, runs, pools = [], [], []
    for given in args.pool:
        name, _, listed = given.partition("=")
        members = [Path(run) for run in listed.split(",") if run]
        names.append(name)
        pools.append(list(range(len(runs), len(runs) + len(members))))
        runs += members
    labels, scores = scores_of(runs)
    seconds = [train_seconds(run) for run in runs]
    splits = ("valid", "pseudo-test")
    header = " | ".join(f"{split} {m}" for split in splits for m in SPREAD_METRICS)
    for k in map(int, args.sizes.split(",")):
        print(f"\n| {k} members: " + ", ".join(names) + f" | draws | {header} | train s |")
        print("|---" * (3 + 2 * len(SPREAD_METRICS)) + "|")
        ranked = []
        for counts in compositions([len(pool) for pool in pools], k):
            draws = draws_of(pools, counts, args.max_draws)
            reports = [average_report(labels, [scores[i] for i in draw]) for draw in draws]
            balanced = spread(reports)["valid"]["balanced_accuracy"]["mean"]
            time = sum(sum(seconds[i] for i in draw) for draw in draws) / len(draws)
            ranked.append((balanced, counts, reports, time))
        ranked.sort(key=lambda item: -item[0])
        for _, counts, reports, time in ranked[: args.top]:
            print(markdown_row(" + ".join(map(str, counts)), reports, f"{time:.0f}"))


if __name__ == "__main__":
    main()
