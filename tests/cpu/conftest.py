from helpers import one_intra_op_thread  # noqa: F401  (autouse fixture for this folder)
