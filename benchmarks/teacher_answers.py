"""How much a --distill teacher's answers for the train rows add to the labels: for each teacher
run, the share of train rows whose answer is on the label's side of 0.5, the mean distance
|P(yes) - label| and the mean confidence |P(yes) - 0.5|. A teacher whose models trained on those
rows agrees with nearly every label; a fit --train-folds teacher answers each row out of fold.

    python benchmarks/teacher_answers.py TEACHER_DIR [TEACHER_DIR ...] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from kboolq.files import default_cache_dir
from kboolq.fit import distilled
from kboolq.inputs import load_inputs
from kboolq.runs.rundir import read_info
from kboolq.threads import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("teachers", nargs="+", type=Path, metavar="TEACHER_DIR")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    cache = args.cache_dir or default_cache_dir()
    print("| teacher | train rows | answer on the label's side | mean abs(P - label) | "
          "mean abs(P - 0.5) |\n|---|---:|---:|---:|---:|")  # fmt: skip
    for teacher in args.teachers:
        info = read_info(teacher)
        inputs = load_inputs(info.data, cache, info.layout.word_chars)
        labels = inputs.prepared.splits["train"].labels.astype(np.float32)
        answers = distilled(inputs, teacher, 1.0, cache).prepared.splits["train"].labels
        agree = float(((answers > 0.5) == (labels > 0.5)).mean())
        print(f"| {teacher} | {len(labels)} | {agree:.3f} | {np.abs(answers - labels).mean():.3f} "
              f"| {np.abs(answers - 0.5).mean():.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
