"""The report library behind scripts/tables.py, sweep.py and speed.py: records -> tables and figures."""
