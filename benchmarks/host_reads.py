"""Host reads per training step of a kboolq fit: every read of a tensor value back to the host
(kboolq.hostreads), over a whole fit (training, validation each epoch, the final report),
divided by the training steps.

    python benchmarks/host_reads.py --data DIR --glove kumo50 --rows 1800 --epochs 2 [--as-on-gpu]

Takes the first --rows rows of DIR's train file (real BoolQ) so that it runs in a minute or two
on a CPU; the count does not depend on the machine. Reports the reads inside the training and
validation steps apart from the others (checkpoints, epoch ends, the final report).
--as-on-gpu runs FastGRU as it runs on CUDA (over the whole padded length, without reading each
batch's longest row back; on a CPU that read costs nothing, so there it trims).
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import dataclasses
import itertools
import tempfile
from pathlib import Path

from kboolq.cli import add_source_arguments, cache_dir, data_settings
from kboolq.inputs import load_inputs
from kboolq.config import add_config_arguments, config_from_args
from kboolq.evaluation import evaluate_splits
from kboolq.hostreads import StepReads, count_host_reads
from kboolq.models import gru
from kboolq.training import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1800, help="first N train rows (default 1800)")
    parser.add_argument(
        "--as-on-gpu", action="store_true", help="FastGRU as on CUDA: no trim, no length read"
    )
    add_source_arguments(parser)
    add_config_arguments(parser)
    args = parser.parse_args()
    config = config_from_args(args)
    if args.as_on_gpu:
        gru.TRIM_ON_HOST["cpu"] = False
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        source = Path(args.source) / "train.jsonl"
        with open(source) as lines:
            (data / "train.jsonl").write_text("".join(itertools.islice(lines, args.rows)))
        settings = dataclasses.replace(data_settings(args), data=str(data))
        inputs = load_inputs(settings, cache_dir(args))
        prepared = inputs.prepared
        with count_host_reads() as counts:
            steps = StepReads(counts)
            model, _ = train_model(config, prepared, Path(tmp) / "run", [steps], verbose=0)
            evaluate_splits(model, prepared, config.batch_size)
    total = sum(counts.values())
    print(
        f"{args.rows} rows, {config.max_epochs} epochs, batch {config.batch_size}"
        f"{', FastGRU as on CUDA' if args.as_on_gpu else ''}: {steps.steps} training steps; "
        f"{total} host reads in all ({dict(counts)}), {total / steps.steps:.2f} per training "
        f"step; inside training and validation steps {steps.inside}, "
        f"{steps.inside / steps.steps:.2f} per training step"
    )


if __name__ == "__main__":
    main()
