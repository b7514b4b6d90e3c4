"""Hyperparameter search for kboolq models (KerasTuner)."""

import kboolq  # noqa: F401  (selects the Keras backend before keras_tuner imports keras)
