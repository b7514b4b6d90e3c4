"""Keras models over the layout: layers.py (the layout's building blocks), gru.py (FastGRU) and
architectures.py (one builder per `--arch`, in one registry)."""
