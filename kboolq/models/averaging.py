"""One model that averages the P(yes) of several trained models (an ensemble run's model).

Saved as an ordinary .keras functional model over the same inputs, so evaluate, predict and the
Python API take an ensemble exactly like a single run.
"""

from __future__ import annotations

import keras


def average(models: list[keras.Model]) -> keras.Model:
    """Members must share the layout and vectors; each is renamed member_<i> inside."""
    shapes = {tensor.name: tensor.shape[1:] for tensor in models[0].inputs}
    inputs = {
        "vectors": keras.Input(shapes["vectors"], name="vectors"),
        "lengths": keras.Input((2,), dtype="int32", name="lengths"),
    }
    outputs = []
    for index, model in enumerate(models):
        model.name = f"member_{index}"
        outputs.append(model(inputs))
    return keras.Model(inputs, keras.layers.Average(name="p_yes")(outputs), name="ensemble")
