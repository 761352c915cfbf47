"""Execute the jupytext notebooks (notebooks/*.py, percent format) against a results set.

    python -m scripts.notebooks [--results-dir results] [--figures-dir DIR] [--out-dir DIR] [NAME ...]

Each notebook runs in a fresh Jupyter kernel with RESULTS_DIR / TABLES_DIR / FIGURES_DIR in its environment;
the executed copy (outputs included) is written to ``<out-dir>/<name>.ipynb`` (default ``<results-dir>/notebooks``).
A cell that raises stops with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def execute(source: Path, out: Path, env: dict[str, str], timeout: int = 600) -> Path:
    import shutil
    import tempfile

    import jupytext
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = jupytext.read(source)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    os.environ.setdefault("MPLBACKEND", "Agg")
    # The kernel is local: talk to it over IPC sockets in a private folder, not TCP (over TCP ipykernel warns that
    # the traffic is unencrypted, and any local user could connect to the ports).
    ipc_dir = tempfile.mkdtemp(prefix="nbkernel-")
    km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(ipc_dir, "kernel"))
    try:
        NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(source.parent)}}).execute()
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=False)
        shutil.rmtree(ipc_dir, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="notebook names (default: every notebooks/*.py)")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--tables-dir", default=None)
    ap.add_argument("--figures-dir", default=None, help="default: <results-dir>/figures/notebooks")
    ap.add_argument("--out-dir", default=None, help="executed .ipynb (default: <results-dir>/notebooks)")
    args = ap.parse_args(argv)
    res = Path(args.results_dir).resolve()
    env = {"RESULTS_DIR": str(res),
           "TABLES_DIR": str(Path(args.tables_dir or res / "tables").resolve()),
           "FIGURES_DIR": str(Path(args.figures_dir or res / "figures" / "notebooks").resolve())}
    out_dir = Path(args.out_dir or res / "notebooks")
    sources = [NOTEBOOKS / f"{n.removesuffix('.py')}.py" for n in args.names] or sorted(NOTEBOOKS.glob("*.py"))
    for src in sources:
        print(execute(src, out_dir / f"{src.stem}.ipynb", env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
