"""One model that averages the P(yes) of several trained models (an ensemble run's model).

Saved as an ordinary .keras functional model over the same inputs, so evaluate, predict and the
Python API take an ensemble exactly like a single run.
"""

from __future__ import annotations

import keras


def average(models: list[keras.Model]) -> keras.Model:
    """Members must share the layout and vectors; each is renamed member_<i> inside. The
    ensemble takes every input some member takes (the stems only when a member compares stems)
    and hands each member just its own."""
    inputs = {}
    for model in models:
        for tensor in model.inputs:
            if tensor.name not in inputs:
                inputs[tensor.name] = keras.Input(
                    shape=tensor.shape[1:], dtype=tensor.dtype, name=tensor.name
                )
    outputs = []
    for index, model in enumerate(models):
        model.name = f"member_{index}"
        outputs.append(model({tensor.name: inputs[tensor.name] for tensor in model.inputs}))
    return keras.Model(inputs, keras.layers.Average(name="p_yes")(outputs), name="ensemble")
