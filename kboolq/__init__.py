"""kboolq: BoolQ yes/no answering with recurrent Keras models over GloVe vectors.

Keras's backend is torch unless KERAS_BACKEND says otherwise (kboolq.backend, imported first).

    run = kboolq.load_run("runs/bigru")            # the model and all it needs to encode text
    run.predict([{"question": "...", "passage": "..."}])   # P(yes) per row
"""

from kboolq import backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

__version__ = "0.1.0"

from kboolq.runs.api import load_run  # noqa: E402  (after the backend is chosen)

__all__ = ["load_run", "__version__"]
