"""Test helpers: compose the real conf/ with Hydra's compose API and run the launcher in-process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"

# W&B stays off in tests unless a test asks for offline mode explicitly.
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(config_name="config", overrides=overrides)




def read_wandb_file(path) -> tuple[list[dict], dict, int | None]:
    """History rows, final summary and exit code from an offline ``.wandb`` file, read independently of wandb.

    The file is a LevelDB-style log (7-byte ":W&B" header, 32 KiB blocks, records with a 7-byte
    crc/length/type header, FULL/FIRST/MIDDLE/LAST chunks) of wandb_internal_pb2.Record protobufs.
    """
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, block, chunks, payloads = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a header: skip to the next block
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST completes a record
            payloads.append(chunks)
            chunks = b""
    history, summary, exit_code = [], {}, None
    for payload in payloads:
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            summary.update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in rec.summary.update})
        elif kind == "exit":
            exit_code = rec.exit.exit_code
    return history, summary, exit_code


def read_finished_wandb_file(path, timeout: float = 30.0) -> tuple[list[dict], dict, int | None]:
    """Like read_wandb_file, once the run's exit record is on disk (wandb's writer flushes asynchronously)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        history, summary, exit_code = read_wandb_file(path)
        if exit_code is not None or time.monotonic() > deadline:
            return history, summary, exit_code
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """One torch intra-op thread per test, restored afterwards. A conftest that imports this fixture makes it
    autouse for its folder: the tensors there are small, and on a shared 2-core machine OpenMP's worker threads
    spin against other processes (such kernels ran up to 100x slower than on one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _act_at_step(monkeypatch, n: int, act):
    """Make ``engine.trainer.train_step`` call ``act()`` at the start of its ``n``-th call from now on.
    Returns the real function, to put back with ``monkeypatch.setattr(engine.trainer, "train_step", real)``."""
    import engine.trainer

    real_step, calls = engine.trainer.train_step, {"n": 0}

    def acting_step(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            act()
        return real_step(*a, **k)

    monkeypatch.setattr(engine.trainer, "train_step", acting_step)
    return real_step


def interrupt_at_step(monkeypatch, n: int):
    """``engine.trainer.train_step`` raises KeyboardInterrupt (a Ctrl-C) on its ``n``-th call; the real function."""
    def ctrl_c():
        raise KeyboardInterrupt

    return _act_at_step(monkeypatch, n, ctrl_c)


def sigterm_at_step(monkeypatch, n: int):
    """SIGTERM to this process as ``engine.trainer.train_step``'s ``n``-th call starts (SLURM's notice arriving
    mid-step); the step itself then runs. Returns the real function."""
    return _act_at_step(monkeypatch, n, lambda: os.kill(os.getpid(), signal.SIGTERM))

