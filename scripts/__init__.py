"""The suite's command-line scripts (reports, sweeps, benchmarks, data preparation); run as `python -m scripts.X`."""
