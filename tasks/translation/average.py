"""Average the parameters of the last N fairseq checkpoints (fairseq's scripts/average_checkpoints.py, which is
not in the wheel).

Checkpoints are ordered by when fairseq wrote them: ``checkpoint_E_U.pt`` (every U updates, during epoch E)
comes before ``checkpointE.pt`` (end of epoch E), which comes before anything of epoch E+1.
``checkpoint_last.pt`` and ``checkpoint_best.pt`` are copies and never counted.

``python -m tasks.translation.average --inputs DIR --num N --output FILE``
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import re
from pathlib import Path

import torch

_EPOCH = re.compile(r"^checkpoint(\d+)\.pt$")
_UPDATE = re.compile(r"^checkpoint_(\d+)_(\d+)\.pt$")


def _order_key(name: str) -> tuple[int, float] | None:
    if m := _EPOCH.match(name):
        return int(m.group(1)), math.inf
    if m := _UPDATE.match(name):
        return int(m.group(1)), float(m.group(2))
    return None


def last_checkpoints(directory: Path | str, n: int) -> list[Path]:
    """The last ``n`` epoch/update checkpoints in ``directory``, oldest first (fewer if fewer exist)."""
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    found = [(k, p) for p in Path(directory).iterdir() if (k := _order_key(p.name)) is not None]
    found.sort(key=lambda kp: kp[0])
    return [p for _, p in found[-n:]]


def load(path: Path | str) -> dict:
    # fairseq checkpoints hold configs and metrics, not only tensors: trusted files written by this run.
    return torch.load(path, map_location="cpu", weights_only=False)


def average_checkpoints(paths: list[Path | str]) -> dict:
    """A checkpoint whose ``model`` is the element-wise mean of the inputs' (the rest: the newest input's).

    Floating-point tensors are averaged in float64 and cast back; integer tensors (counters) must agree.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    sums: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
    newest = None
    for i, path in enumerate(paths):
        state = load(path)
        model = state["model"]
        if i == 0:
            keys = list(model)
        elif list(model) != keys:
            raise ValueError(f"{path}: parameters differ from {paths[0]}'s; cannot average")
        for k, t in model.items():
            if t.is_floating_point():
                sums[k] = sums[k] + t.double() if k in sums else t.double().clone()
            elif k not in sums:
                sums[k] = t.clone()
            elif not torch.equal(sums[k], t):
                raise ValueError(f"{path}: integer tensor {k} differs between checkpoints")
        newest = state
    dtypes = {k: t.dtype for k, t in newest["model"].items()}
    averaged = collections.OrderedDict(
        (k, (t / len(paths)).to(dtypes[k]) if t.is_floating_point() else t) for k, t in sums.items())
    newest["model"] = averaged
    # Generation needs no optimizer state; dropping it keeps the file the size of the model.
    newest["last_optimizer_state"] = None
    newest["averaged_from"] = [os.path.basename(str(p)) for p in paths]
    return newest


def save_average(paths: list[Path | str], output: Path | str) -> Path:
    output = Path(output)
    tmp = output.with_name(output.name + ".tmp")
    torch.save(average_checkpoints(paths), tmp)
    os.replace(tmp, output)
    return output


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", required=True, help="fairseq --save-dir")
    ap.add_argument("--num", type=int, required=True, help="average the last NUM checkpoints")
    ap.add_argument("--output", required=True)
    args = ap.parse_args(argv)
    paths = last_checkpoints(args.inputs, args.num)
    save_average(paths, args.output)
    print("averaged:", " ".join(p.name for p in paths))


if __name__ == "__main__":
    main()
