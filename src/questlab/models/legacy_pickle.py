"""Reading model state that questlab <= 0.9.0 wrote as a joblib pickle, without running its code.

A pickle names the callables that rebuild it, so loading one from an untrusted source can run
anything. questlab no longer writes pickles (TF-IDF state is arrays in ``.npz`` and settings in
JSON); the TF-IDF state of older runs and bundles (``tfidf.joblib``) is read with an unpickler
that resolves only an allowlist of numpy arrays and scalars and the four scikit-learn classes
that state holds, whose restoring sets attributes and calls nothing else. Any other name (``os.system``,
``builtins.eval``, ...) is refused before it is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from joblib.numpy_pickle import NumpyUnpickler

from questlab.errors import RunFormatError

_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NAMES = {"ndarray", "dtype", "_reconstruct", "scalar"}
_ALLOWED = {
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("sklearn.feature_extraction.text", "TfidfTransformer"),
    ("sklearn.linear_model._ridge", "Ridge"),
    ("sklearn.preprocessing._data", "StandardScaler"),
    ("sklearn.preprocessing._encoders", "OneHotEncoder"),
}


def _allowed(module: str, name: str) -> bool:
    if (module, name) in _ALLOWED:
        return True
    if module not in _NUMPY_MODULES:
        return False
    if name in _NUMPY_NAMES:
        return True
    scalar = getattr(np, name, None) if module == "numpy" else None
    return isinstance(scalar, type) and issubclass(scalar, np.generic)  # numpy.float64 and the like


class _AllowlistUnpickler(NumpyUnpickler):
    def find_class(self, module: str, name: str) -> Any:
        if not _allowed(module, name):
            raise RunFormatError(
                f"{self.filename}: the pickled state names {module}.{name}, which a questlab model state "
                "never holds: refused without running it (the file was altered, or is not questlab's)"
            )
        return super().find_class(module, name)


def load_legacy_joblib(path: Path) -> Any:
    """The object a questlab <= 0.9.0 ``joblib.dump`` wrote to ``path``, allowlisted classes only."""
    with Path(path).open("rb") as fh:
        return _AllowlistUnpickler(str(path), fh, ensure_native_byte_order=True).load()
