"""What answering costs with each run: seconds to predict the same rows, against the first run.

Loads every RUN_DIR with kboolq.load_run, predicts the valid split's rows of the first run's
data (after one warm-up batch) --repeats times and prints the median seconds, rows/s, the
ratio to the first run and the parameter count, e.g. a distilled student against its
teacher ensemble:

    python benchmarks/inference_cost.py runs/student runs/teacher [--rows 1000]
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import statistics
import time
from pathlib import Path

from kboolq.data.boolq import load_boolq
from kboolq.files import default_cache_dir
from kboolq.cli import add_threads_argument
from kboolq.threads import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories; the first is 1.00x")
    parser.add_argument("--rows", type=int, default=1000, help="valid rows predicted")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the median is shown")
    add_threads_argument(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    cache = default_cache_dir()
    runs = [kboolq.load_run(run, cache) for run in args.runs]
    data = runs[0].info.data
    rows = load_boolq(data.data, data.valid_size).splits["valid"][: args.rows]
    reference = None
    for run in runs:
        run.predict(rows[:64])  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run.predict(rows)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        reference = reference or seconds
        print(
            f"{str(run.path):40s} {seconds:7.2f} s  {len(rows) / seconds:7.1f} rows/s  "
            f"{seconds / reference:5.2f}x  {run.model.count_params():,} parameters"
        )


if __name__ == "__main__":
    main()
