"""kboolq: BoolQ yes/no answering with recurrent Keras models over GloVe vectors.

Keras picks TensorFlow unless told otherwise, and kboolq does not depend on TensorFlow, so the
torch backend is selected here, before any module of the package imports keras. A user who set
KERAS_BACKEND (jax, say) keeps that choice.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

__version__ = "0.1.0"
