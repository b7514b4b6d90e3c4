"""FastGRU: keras.layers.GRU whose forward pass runs torch's fused GRU kernel on the torch backend.

Keras 3.15 runs a masked GRU on torch as a Python loop over time steps (and an unmasked one with
an O(T^2) backward on CPU). FastGRU keeps Keras's weights, configuration and .keras format, so a
saved model loads anywhere; only the computation differs, and it is exact:

* Keras's kernel columns are gates [z, r, h]; torch's rows are [r, z, n]. Both use reset_after
  (h~ = tanh(x W + b + r * (h U + b_r))) and h = z * h_prev + (1 - z) * h~.
* A masked step keeps the state and repeats the previous output. Gathering each row's unmasked
  steps to the front (stable order), running the fused kernel over the batch trimmed to its
  longest row, and gathering outputs back by the running count of real steps reproduces that,
  for masks with gaps (the question padding before the separator) as well as trailing padding.

go_backwards (the backward half of keras.layers.Bidirectional) flips inputs and mask first,
as Keras does. Other backends, and settings the fused kernel cannot express, fall back to
keras.layers.GRU.
"""

from __future__ import annotations

import keras
import torch

# Trim each batch to its longest row, which reads that length back to the host: free on a CPU,
# but on a GPU a read waits for all queued work, so there the kernel runs over the whole padded
# length instead (exact either way: padding steps never reach a real step's output).
TRIM_ON_HOST = {"cpu": True, "cuda": False}
EXPORTING = False  # kboolq.export: compact with a scatter instead of a sort (ONNX has no sort)


@keras.saving.register_keras_serializable(package="kboolq")
class FastGRU(keras.layers.GRU):
    def _fusable(self) -> bool:
        cell = self.cell
        return (
            keras.backend.backend() == "torch"
            and cell.reset_after
            and cell.use_bias
            and cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
            and cell.recurrent_dropout == 0
            and not (self.stateful or self.return_state or self.unroll)
        )

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if initial_state is not None or not self._fusable():
            return super().call(
                sequences, initial_state=initial_state, mask=mask, training=training
            )
        if training and self.cell.dropout > 0:
            # Keras's GRU drops the same input features at every step of a sequence.
            shape = (keras.ops.shape(sequences)[0], 1, keras.ops.shape(sequences)[2])
            keep = keras.random.dropout(
                keras.ops.ones(shape), self.cell.dropout, seed=self.cell.seed_generator
            )
            sequences = sequences * keep
        return _torch_gru(self, sequences, mask, bool(training))


def _torch_gru(layer: FastGRU, inputs, mask, training: bool):
    cell = layer.cell
    units = cell.units
    if layer.go_backwards:  # Keras reads the reversed sequence and returns outputs reversed
        inputs = inputs.flip(1)
        mask = None if mask is None else mask.flip(1)

    def torch_gates(weights):  # Keras [z, r, h] -> torch [r, z, n] along the last axis
        z, r, h = torch.split(weights, units, dim=-1)
        return torch.cat([r, z, h], dim=-1)

    weights = [
        torch_gates(cell.kernel.value).t(),
        torch_gates(cell.recurrent_kernel.value).t(),
        *torch_gates(cell.bias.value).unbind(0),
    ]
    params = _flat_views(weights) if inputs.is_cuda else [w.contiguous() for w in weights]
    batch, _, features = inputs.shape
    if mask is None:
        outputs = _fused(inputs, params, units, training)
        return outputs if layer.return_sequences else outputs[:, -1]
    mask = mask.to(device=inputs.device, dtype=torch.bool)  # a mask built on the CPU too
    lengths = mask.sum(dim=1)
    steps = mask.shape[1]
    if TRIM_ON_HOST.get(inputs.device.type, False):
        steps = max(int(lengths.max()), 1)
        positions = torch.arange(mask.shape[1], device=mask.device)
        if torch.equal(mask, positions < lengths.unsqueeze(1)):
            outputs = _fused(inputs[:, :steps], params, units, training)
            return _prefix_outputs(layer, outputs, mask)
    if EXPORTING:  # the same compaction without a sort, which ONNX cannot express
        real = mask.to(torch.int64)  # each step's place: real steps first, then padding
        rank = torch.where(
            mask, real.cumsum(1) - 1, lengths.unsqueeze(1) + (1 - real).cumsum(1) - 1
        )
        compact = torch.zeros_like(inputs).scatter(
            1, rank.unsqueeze(-1).expand(-1, -1, features), inputs
        )
    else:
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :steps]
        compact = inputs.gather(1, order.unsqueeze(-1).expand(-1, -1, features))
    outputs = _fused(compact, params, units, training)
    padded = torch.cat([outputs.new_zeros((batch, 1, units)), outputs], dim=1)
    if not layer.return_sequences:
        return padded[torch.arange(batch, device=padded.device), lengths]
    # real steps so far: the index into padded, 0 = nothing seen yet
    counts = mask.to(torch.int64).cumsum(dim=1)
    result = padded.gather(1, counts.unsqueeze(-1).expand(-1, -1, units))
    if layer.zero_output_for_mask:
        result = result * mask.unsqueeze(-1).to(result.dtype)
    return result


def _flat_views(tensors):
    """The weights as views into one contiguous buffer, in torch's order (w_ih, w_hh, b_ih,
    b_hh): cuDNN then reads them in place instead of compacting its own copy (and warning) at
    every call. The CPU kernel needs no such buffer, so only CUDA inputs take this path."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    return [
        part.view(t.shape)
        for part, t in zip(flat.split([t.numel() for t in tensors]), tensors, strict=True)
    ]


def _fused(inputs, params, units: int, training: bool):
    initial = inputs.new_zeros((1, inputs.shape[0], units))
    # cuDNN keeps what its backward pass needs only in training mode, and refuses a backward
    # pass otherwise; gradients outside training (saliency, a custom loop) need it too.
    wanted = inputs.requires_grad or params[0].requires_grad
    keep = training or (torch.is_grad_enabled() and wanted)
    return torch._VF.gru(inputs, initial, params, True, 1, 0.0, keep, False, True)[0]


def _prefix_outputs(layer: FastGRU, outputs, mask):
    """Keras's outputs when every row's real steps come first (trailing padding only).

    The common case (Segment parts, the compacted seed layout) needs no gathers: a row's last
    real output is repeated (or zeroed) over its padding with elementwise ops only.
    """
    batch, steps, units = outputs.shape
    lengths = mask.sum(dim=1)
    last = outputs[torch.arange(batch, device=outputs.device), (lengths - 1).clamp(min=0)]
    last = last * (lengths > 0).unsqueeze(-1).to(last.dtype)  # an empty row keeps the zero state
    if not layer.return_sequences:
        return last
    outputs = torch.nn.functional.pad(outputs, (0, 0, 0, mask.shape[1] - steps))
    fill = torch.zeros_like(last) if layer.zero_output_for_mask else last
    return torch.where(mask.unsqueeze(-1), outputs, fill.unsqueeze(1))
