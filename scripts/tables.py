"""``make tables``: every run record -> Tables 2 (vision), 3 (translation), 4 (LM) and the DLRM figure.

    python -m scripts.tables [--results-dir results] [--tables-dir DIR] [--figures-dir DIR] [--scale paper]

Writes ``<tables-dir>/table2_vision.{md,csv,tex}`` (and table3_translation, table4_lm, fig6_dlrm) for each
(scale, data source) found in the records: paper scale on real data without a suffix, anything else with one
(``table2_vision_smoke_synthetic.md``) and a banner in the title. Training curves go to ``<figures-dir>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.report.defaults import hydra_defaults
from scripts.report.outputs import write_comparison


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", default="results", help="holds runs/<task>/<optim>/<run_id>.json")
    ap.add_argument("--tables-dir", default=None, help="default: <results-dir>/tables")
    ap.add_argument("--figures-dir", default=None, help="default: <results-dir>/figures")
    ap.add_argument("--scale", default=None, help="only this trainer profile (default: every one present)")
    ap.add_argument("--data-source", default=None, help="only this data source (real/synthetic)")
    ap.add_argument("--conf-dir", default=None, help="Hydra conf/ for the default hyperparameters")
    args = ap.parse_args(argv)
    res = Path(args.results_dir)
    tables = Path(args.tables_dir or res / "tables")
    figures = Path(args.figures_dir or res / "figures")
    defaults = hydra_defaults(args.conf_dir) if args.conf_dir else hydra_defaults()
    written = write_comparison(res, tables, figures, defaults, scale=args.scale, data_source=args.data_source)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
