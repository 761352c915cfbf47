"""One intra-op thread for these tests: the CPU is shared, and oversubscribed threads make small models slower."""

from helpers import one_intra_op_thread  # noqa: F401  (autouse fixture for this folder)
