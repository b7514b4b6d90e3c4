"""Makes importing kboolq safe: Keras's backend is chosen before any module imports keras.

Keras picks TensorFlow unless told otherwise, and kboolq does not depend on TensorFlow, so the
torch backend is selected here. A user who set KERAS_BACKEND (jax, say) keeps that choice; if
that backend is not installed, this says so in one line instead of Keras's long traceback.

The package's __init__ imports this module first, and so does every command (`python -m
kboolq.COMMAND`): run from a folder that holds a folder named kboolq without an __init__.py (a
clone of this repository, say), Python imports that folder as the package instead of the
installed one and never runs the package's __init__; the command then stops here in one line.
"""

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")


def _stop(message: str) -> None:
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    if (sys.argv and sys.argv[0] == "-m") or (main and main.name.split(".")[0] != "__main__"):
        raise SystemExit(message)  # a command (`python -m kboolq.COMMAND`): one line, no trace
    raise ImportError(message)


_package = sys.modules.get("kboolq")
if _package is not None and getattr(_package, "__file__", None) is None:  # a namespace package
    _shadow = next(iter(getattr(_package, "__path__", [])), "kboolq")
    _stop(
        f"kboolq: the folder {_shadow} hides the installed kboolq package (Python imports "
        f"folders in the current directory first); run the command from another folder, such "
        f"as {_shadow} itself or {Path(__file__).resolve().parent.parent}"
    )

BACKEND = os.environ["KERAS_BACKEND"]
if importlib.util.find_spec(BACKEND) is None:
    _stop(
        f"kboolq: KERAS_BACKEND={BACKEND}, but {BACKEND} is not installed: "
        f"pip install {BACKEND}, or unset KERAS_BACKEND to use torch"
    )
