"""Same-vector against mixed-vector ensembles of equal size, from runs trained one by one: the
table of docs/results.md's "Vectors" section.

    python benchmarks/vector_mix.py --runs glove=RUN,RUN,... --runs spacy=RUN,RUN,... \\
        [--runs joined=RUN,...] [--sizes 2,4]

Each group is one vector source's single runs (seeds). Printed as Markdown rows, mean +- std
(n-1) over the draws: each group's single runs; then, for each size K, every K-member draw from
one group ("same vectors") and every draw with K / G members from each of G groups ("mixed",
the groups named by --mix, default all; a K that G does not divide has no mixed row). Draws
share members, so their std understates the spread of independent ensembles. Each run encodes
the rows its own way, as kboolq.ensemble's members do.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from run_scores import average_report, markdown_row, scores_of

from kboolq.evaluation import SPREAD_METRICS
from kboolq.threads import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs",
        action="append",
        required=True,
        metavar="NAME=RUN,RUN,...",
        help="one vector source and its runs (seeds); repeat per source",
    )
    parser.add_argument("--sizes", default="2", help="ensemble sizes K, comma-separated")
    parser.add_argument("--mix", help="the groups the mixed draws take from (default: all)")
    args = parser.parse_args()
    set_threads(1)
    groups: dict[str, list[Path]] = {}
    for given in args.runs:
        name, _, runs = given.partition("=")
        groups[name] = [Path(run) for run in runs.split(",") if run]
    every = [run for runs in groups.values() for run in runs]
    labels, scores = scores_of(every)
    index: dict[str, list[int]] = {}
    for name, runs in groups.items():
        start = sum(len(index[n]) for n in index)
        index[name] = list(range(start, start + len(runs)))
    mix = args.mix.split(",") if args.mix else list(groups)
    print(f"`python benchmarks/vector_mix.py {' '.join(sys.argv[1:])}`\n")
    splits = ("valid", "pseudo-test")
    header = " | ".join(f"{split} {m}" for split in splits for m in SPREAD_METRICS)
    print(f"| members | draws | {header} |")
    print("|---" * (2 + 2 * len(SPREAD_METRICS)) + "|")
    for name, members in index.items():
        print(
            markdown_row(
                f"one model, {name}", [average_report(labels, [scores[i]]) for i in members]
            )
        )
    for k in map(int, args.sizes.split(",")):
        for name, members in index.items():
            draws = list(itertools.combinations(members, k))
            if draws:
                reports = [average_report(labels, [scores[i] for i in d]) for d in draws]
                print(markdown_row(f"{k} members, all {name}", reports))
        if k % len(mix):
            continue
        per = k // len(mix)
        parts = [list(itertools.combinations(index[name], per)) for name in mix]
        draws = [sum(chosen, ()) for chosen in itertools.product(*parts)]
        if draws:
            reports = [average_report(labels, [scores[i] for i in d]) for d in draws]
            print(markdown_row(f"{k} members, {per} each of {' + '.join(mix)}", reports))


if __name__ == "__main__":
    main()
