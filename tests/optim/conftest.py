"""tests/optim configuration.

- Makes the shared test library (adahessian_testlib.py, beside this file) importable: the suite runs pytest with
  --import-mode=importlib and only tests/ on the path. Puts the repository root first on the path too: a plain
  ``pytest`` (unlike ``python -m pytest``) does not, and an editable install made while optim/ had no __init__.py
  maps ``optim`` to an empty namespace package.
- Silences torch's once-per-process warning about backward(create_graph=True) making a param <-> grad cycle:
  AdaHessian breaks that cycle in step() (test_memory.py checks it).
- Runs each test here with one intra-op thread (restored afterwards).
"""

import sys
from pathlib import Path

import pytest
from helpers import one_intra_op_thread  # noqa: F401  (autouse fixture for this folder)

_HERE = str(Path(__file__).resolve().parent)
_ROOT = str(Path(__file__).resolve().parents[2])
for _path in (_ROOT, _HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def pytest_collection_modifyitems(config, items):
    mark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")
    for item in items:
        if str(item.path).startswith(_HERE):
            item.add_marker(mark)
