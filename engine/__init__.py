"""The suite's machinery shared by every task: launcher logic, trainer loop, run records, W&B, provenance."""
