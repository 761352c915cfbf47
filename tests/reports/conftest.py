"""tests/reports: the repository root (for ``scripts.report``) and this folder (for records_factory) on sys.path."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)
