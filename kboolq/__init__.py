"""kboolq: BoolQ yes/no answering with recurrent Keras models over GloVe vectors.

Keras picks TensorFlow unless told otherwise, and kboolq does not depend on TensorFlow, so the
torch backend is selected here, before any module of the package imports keras. A user who set
KERAS_BACKEND (jax, say) keeps that choice; if that backend is not installed, importing kboolq
says so in one line instead of Keras's long traceback.

    run = kboolq.load_run("runs/bigru")            # the model and all it needs to encode text
    run.predict([{"question": "...", "passage": "..."}])   # P(yes) per row
"""

import importlib.util
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

__version__ = "0.1.0"

_BACKEND = os.environ["KERAS_BACKEND"]
if importlib.util.find_spec(_BACKEND) is None:
    _message = (
        f"kboolq: KERAS_BACKEND={_BACKEND}, but {_BACKEND} is not installed: "
        f"pip install {_BACKEND}, or unset KERAS_BACKEND to use torch"
    )
    if sys.argv and sys.argv[0] == "-m":  # started as `python -m kboolq.COMMAND`
        raise SystemExit(_message)
    raise ImportError(_message)

from kboolq.api import load_run  # noqa: E402  (after the backend is chosen)

__all__ = ["load_run", "__version__"]
