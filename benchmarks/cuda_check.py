"""Does kboolq compute on a CUDA GPU what it computes on the CPU?

Two checks, each printing the largest absolute difference next to its tolerance, and exiting 1
if any is over:

1. FastGRU against keras.layers.GRU with the same weights, on the current device: outputs and
   gradients (inputs and every weight) for no mask, a prefix mask (trailing padding only), a
   gapped mask (padding inside the row, leading padding, an empty row), forward and
   go_backwards, return_sequences on and off (gradients relative to their largest value, when
   that is above 1). Run once with cuDNN's TF32 math allowed (torch's
   default, the speed users get) and once with it off (exact float32).
2. Models saved on the CPU (`--make-reference DIR`, run on the CPU machine) reloaded on this
   device by `--reference DIR`: the saved CPU predictions must be reproduced.

    python benchmarks/cuda_check.py --make-reference ref/        # on the CPU
    python benchmarks/cuda_check.py --reference ref/             # on the GPU machine
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import sys
from pathlib import Path

import keras
import numpy as np
import torch

from kboolq.data.batches import Batches
from kboolq.config import Config
from kboolq.models.gru import FastGRU
from kboolq.models.architectures import build_model
from kboolq.data.layout import Layout, Lookup, Split
from kboolq.runs.rundir import MODEL_FILE, load_model, save_model
from kboolq.training import compile_model

B, T, D, H = 16, 40, 50, 64
REFERENCE_ARCHS = ("notebook", "bigru", "attention")
EXACT = 2e-5  # float32 against float32: reordered sums only
TF32 = 5e-3  # cuDNN with TF32 inputs (10-bit mantissa) against the float32 Keras loop


def masks() -> dict[str, np.ndarray | None]:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, T + 1, B)
    lengths[-1] = 0  # an empty row
    prefix = np.arange(T) < lengths[:, None]
    gapped = prefix.copy()
    gapped[0, 3:9] = False  # question padding before the separator
    gapped[1, :4] = False  # leading padding
    gapped[2] = True
    return {"none": None, "prefix": prefix, "gapped": gapped}


def gru_differences(device: str) -> list[tuple[str, float, float]]:
    """(case, max |output diff|, max |gradient diff|) for every case."""
    x = np.random.default_rng(1).normal(size=(B, T, D)).astype("float32")
    rows = []
    for mask_name, mask in masks().items():
        for backwards in (False, True):
            for sequences in (True, False):
                reference = keras.layers.GRU(H, return_sequences=sequences, go_backwards=backwards)
                fast = FastGRU(H, return_sequences=sequences, go_backwards=backwards)
                reference.build((None, T, D))
                fast.build((None, T, D))
                fast.set_weights(reference.get_weights())
                outputs, grads = [], []
                for layer in (reference, fast):
                    inputs = torch.tensor(x, device=device, requires_grad=True)
                    m = None if mask is None else torch.tensor(mask, device=device)
                    out = layer(inputs, mask=m, training=True)  # no dropout: same math
                    (out**2).sum().backward()
                    outputs.append(out.detach().cpu().numpy())
                    grads.append(
                        [inputs.grad.cpu().numpy()]
                        + [w.value.grad.cpu().numpy() for w in layer.weights]
                    )
                out_diff = float(np.abs(outputs[0] - outputs[1]).max())
                grad_diff = max(
                    float(np.abs(a - b).max() / max(1.0, np.abs(a).max()))
                    for a, b in zip(*grads, strict=True)
                )
                name = (
                    f"{mask_name:6} {'backward' if backwards else 'forward ':8} "
                    f"{'sequences' if sequences else 'last     '}"
                )
                rows.append((name, out_diff, grad_diff))
    return rows


def reference_inputs(seed: int = 2) -> tuple[Layout, dict, np.ndarray]:
    """A fixed batch in kboolq's layout (question, separator, passage) with random vectors."""
    rng = np.random.default_rng(seed)
    layout = Layout(q_max=12, p_max=60)
    rows = 24
    q_len = rng.integers(1, 13, rows).astype(np.int32)
    p_len = rng.integers(1, 61, rows).astype(np.int32)
    ids = np.zeros((rows, layout.steps), np.int32)
    for i in range(rows):
        ids[i, : q_len[i]] = rng.integers(1, 300, q_len[i])
        ids[i, layout.passage_start : layout.passage_start + p_len[i]] = rng.integers(
            1, 300, p_len[i]
        )
    table = rng.normal(size=(300, 16)).astype(np.float32)
    table[0] = 0
    labels = (rng.random(rows) < 0.6).astype(np.int8)
    inputs, _ = Batches(
        Split(ids, q_len, p_len, labels), Lookup(table, np.zeros(len(table), np.int32)), rows
    )[0]
    return layout, inputs, labels


def make_reference(directory: Path) -> None:
    layout, inputs, labels = reference_inputs()
    arrays = {"vectors": inputs["vectors"], "lengths": inputs["lengths"]}
    for arch in REFERENCE_ARCHS:
        keras.utils.set_random_seed(0)
        config = Config(arch=arch, hidden_size=24, embedding_dropout=0.0)
        model = compile_model(build_model(config, layout, inputs["vectors"].shape[2]), config)
        for _ in range(3):  # move the weights off their initial values
            model.train_on_batch(inputs, labels.astype("float32"))
        run_dir = directory / arch
        run_dir.mkdir(parents=True, exist_ok=True)
        save_model(model, run_dir)
        arrays[f"p_{arch}"] = load_model(run_dir).predict_on_batch(inputs).ravel()
    np.savez(directory / "reference.npz", **arrays)
    print(f"wrote {', '.join(REFERENCE_ARCHS)} models and reference.npz to {directory}")


def check_reference(directory: Path) -> list[tuple[str, float, float]]:
    saved = np.load(directory / "reference.npz")
    inputs = {"vectors": saved["vectors"], "lengths": saved["lengths"]}
    rows = []
    for arch in REFERENCE_ARCHS:
        if not (directory / arch / MODEL_FILE).exists():
            continue
        predicted = load_model(directory / arch).predict_on_batch(inputs).ravel()
        rows.append((f"{arch} saved on CPU", float(np.abs(predicted - saved[f"p_{arch}"]).max())))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--make-reference", type=Path, help="write CPU reference models here")
    parser.add_argument("--reference", type=Path, help="compare with the models saved here")
    args = parser.parse_args()
    if args.make_reference:
        make_reference(args.make_reference)
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device {name}; torch {torch.__version__}, keras {keras.__version__}")
    failed = 0
    settings = [("tf32 allowed", TF32, True), ("tf32 off", EXACT, False)]
    for label, tolerance, tf32 in settings if device == "cuda" else settings[1:]:
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        print(f"FastGRU vs keras.layers.GRU on {device}, {label} (tolerance {tolerance:g}):")
        print(f"  {'case':32} {'output':>10} {'gradient':>10}")
        for case, out_diff, grad_diff in gru_differences(device):
            bad = max(out_diff, grad_diff) > tolerance
            failed += bad
            print(f"  {case:32} {out_diff:10.2e} {grad_diff:10.2e}{'  OVER' if bad else ''}")
    torch.backends.cudnn.allow_tf32 = True  # torch's default again
    torch.backends.cuda.matmul.allow_tf32 = False
    if args.reference:
        print(f"CPU-saved models predicting on {device} (tolerance {TF32:g} in P(yes)):")
        for case, diff in check_reference(args.reference):
            bad = diff > TF32
            failed += bad
            print(f"  {case:32} {diff:10.2e}{'  OVER' if bad else ''}")
    print("all within tolerance" if not failed else f"{failed} case(s) over tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
