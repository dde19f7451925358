"""numpy for the serving modules, imported when first used.

A version stored with its trees is answered by the C library (serving/native.py): a
backend's first predict() of it then needs neither onnxruntime nor numpy, which alone
takes a fifth of a second to import. The modules on that path name numpy ``np`` as
usual, but bound to ``numpy_for(__name__)``: the first ``np.x`` imports numpy and makes
every such module's ``np`` numpy itself, so later uses cost what they always did.
"""

from __future__ import annotations

import sys


class _Numpy:
    def __init__(self):
        self._modules: list[str] = []

    def __getattr__(self, name: str):
        import numpy

        for module in self._modules:
            if getattr(sys.modules.get(module), "np", None) is self:
                sys.modules[module].np = numpy
        return getattr(numpy, name)


_numpy = _Numpy()


def numpy_for(module: str):
    """numpy for the module of that name, or what imports it at the first use."""
    if "numpy" in sys.modules:
        return sys.modules["numpy"]
    _numpy._modules.append(module)
    return _numpy
