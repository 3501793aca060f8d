"""The benchmarks' NumPy AP-selection environment: the tests' NumPy reference, re-exported.

The benchmark's reference is the tests' NumPy reference: the implementation lives in
``tests/numpy_ap_selection.py`` (validated there against the JAX environment by
``tests/test_numpy_ap_selection.py``), so the baseline that is timed is the one that is tested.
This module loads that file by its path (the tests never import ``bench``) and re-exports its
names, so ``bench/bench_envs.py``, ``bench/bench_training.py`` and ``bench/torch_mappo.py``
import ``bench.numpy_ap_selection`` as before.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

_NAME = "_cfmimo_tests_numpy_ap_selection"
_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "numpy_ap_selection.py"
)


def _load():
    # loaded by path under a private name: putting tests/ on sys.path would let its modules
    # (conftest, reference) shadow others, and running a script from bench/ would find this
    # file first under the plain name
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(_NAME, _PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


_reference = _load()
__all__ = [
    name
    for name, value in vars(_reference).items()
    if not name.startswith("_")
    and name != "annotations"
    and not isinstance(value, types.ModuleType)
]
globals().update({name: getattr(_reference, name) for name in __all__})
