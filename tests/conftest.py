"""Fixtures shared by all tests; plain helpers live in tests/helpers.py."""

import helpers  # noqa: F401  (sets W&B to disabled for every test)
import pytest


@pytest.fixture
def smoke_overrides(tmp_path):
    """Overrides for a fast, self-contained smoke run writing into tmp_path."""
    return [
        "trainer=smoke",
        "data.source=synthetic",
        "trainer.progress=false",
        f"paths.results_dir={tmp_path / 'results'}",
        f"paths.work_dir={tmp_path / 'checkpoints'}",
        "logger.mode=disabled",
        # lighter than trainer=smoke itself: the suite runs dozens of these on 2 CPU cores
        "trainer.batch_size=8",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "task.eval_batch_size=16",
    ]
