"""What a user sees of the fairseq subprocesses: their log minus known chatter, under a tqdm progress bar.

The full output of every subprocess still goes to its log file in the run directory (train.log, preprocess.log,
generate.txt); only the console is trimmed. Two kinds of noise are removed:

* warnings that fairseq 0.12 triggers in the libraries it calls and that change nothing for a run here
  (:data:`WARNING_FILTERS`, passed to the subprocesses as ``PYTHONWARNINGS`` so they are silenced where they arise);
* INFO lines about fairseq's internals (:data:`QUIET_INFO`): its full config, the model printout, batching and
  checkpoint-writing steps. Everything else is shown: the training and validation log lines, saved checkpoints,
  resumption, every WARNING or ERROR line, any other warning and any traceback.
"""

from __future__ import annotations

import re
from typing import Callable

from tqdm import tqdm

# PYTHONWARNINGS entries (action:message-prefix:category:module); each one is harmless for this suite's runs.
WARNING_FILTERS = (
    # fairseq's import scripts a few helpers with torch.jit.script, which torch >= 2.6 deprecates.
    "ignore::FutureWarning:torch.jit._script",
    # fairseq's train entry point composes its config with hydra's experimental compose API (hydra 1.0 style):
    # deprecation notices about that API, its package headers, schema matching and the strict flag.
    "ignore::UserWarning:hydra.experimental.initialize",
    "ignore::UserWarning:hydra.experimental.compose",
    "ignore::UserWarning:hydra.core.default_element",
    "ignore::UserWarning:hydra.compose",
    "ignore::UserWarning:runpy",  # the schema-matching notice is attributed to the `python -m` frame
    # fairseq asks for pinned memory unconditionally; on a CPU-only machine torch notes that it does nothing.
    "ignore:'pin_memory' argument is set as true but no accelerator is found:UserWarning",
    # fairseq 0.12 calls torch.cuda.amp.autocast(enabled=False) in every train step (CPU and GPU alike).
    "ignore:`torch.cuda.amp.autocast(args...)` is deprecated:FutureWarning",
    # fairseq's attention passes a bool padding mask with a float attention mask; torch converts it correctly.
    "ignore:Support for mismatched key_padding_mask and attn_mask is deprecated:UserWarning",
)

# INFO lines hidden from the console, by logger: None hides every INFO line of that logger, a tuple hides the
# messages starting with one of its prefixes.
QUIET_INFO: dict[str, tuple[str, ...] | None] = {
    "fairseq.tasks.fairseq_task": None,      # batching internals (can_reuse_epoch_itr, creating new batches, ...)
    "fairseq.data.data_utils": None,         # "loaded N examples from <file>", per file
    "fairseq.data.iterators": None,          # number of batches
    "fairseq.tasks.translation": None,       # dictionary sizes, examples per split
    "fairseq.tasks.text_to_speech": None,    # asks to install tensorboardX, which translation never uses
    "fairseq_cli.preprocess": ("Namespace(", "[", "/"),  # its arguments and per-file counts (the summary stays)
    "fairseq_cli.train": ("{", "num. expert model params", "Start iterating", "begin dry-run validation"),
    "fairseq.trainer": ("detected shared parameter", "Preparing to load checkpoint", "Saving checkpoint to",
                        "Finished saving checkpoint", "loading train data", "begin training epoch"),
    "fairseq.checkpoint_utils": ("Preparing to save checkpoint",),
}

_STAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| (?P<level>[A-Z]+) \| (?P<logger>[\w.]+) \| (?P<msg>.*)$")
_BASIC = re.compile(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):(?P<logger>[\w.]+):(?P<msg>.*)$")
_NEW_BLOCK = re.compile(r"^(Traceback \(most recent call last\)|\S+:\d+: \w*(Warning|Error)\b)")


class LogFilter:
    """``keep(line)``: whether a line of fairseq output is shown. A line that is not a log record (a printed module,
    a warning's source line, a traceback's frames) follows the record it continues."""

    def __init__(self) -> None:
        self.showing = True

    def keep(self, line: str) -> bool:
        text = line.rstrip("\n")
        m = _STAMPED.match(text) or _BASIC.match(text)
        if m:
            self.showing = not (m["level"] in ("DEBUG", "INFO") and self._quiet(m["logger"], m["msg"]))
        elif _NEW_BLOCK.match(text):
            self.showing = True
        return self.showing

    @staticmethod
    def _quiet(logger: str, msg: str) -> bool:
        if logger not in QUIET_INFO:
            return msg.rstrip().endswith("(")  # the first line of a printed module (TransformerModel( ...)
        prefixes = QUIET_INFO[logger]
        return prefixes is None or msg.startswith(prefixes) or msg.rstrip().endswith("(")


_UPDATES = re.compile(r'"num_updates": "?(\d+)')


def updates_of(line: str) -> int | None:
    """The update count a fairseq training log line reports (train_inner, train), if any."""
    m = _UPDATES.search(line) if "| train" in line else None
    return int(m.group(1)) if m else None


def sentence_done(line: str) -> int | None:
    """1 for each source line (``S-<id>``) fairseq-generate prints: one sentence translated."""
    return 1 if line.startswith("S-") else None


class Console:
    """A subprocess's ``on_line`` callback: echo the lines :class:`LogFilter` keeps, advance a tqdm bar.

    ``position(line)`` returns the bar's new absolute position (``absolute=True``) or an increment, or None.
    Disabled (``trainer.progress=false``), it shows nothing, as before.
    """

    def __init__(self, enabled: bool, desc: str, unit: str, total: int | None = None, echo: bool = True,
                 position: Callable[[str], int | None] | None = None, absolute: bool = False):
        self.enabled, self.echo, self.position, self.absolute = enabled, echo, position, absolute
        self.filter = LogFilter()
        # no bar where nothing counts progress (the console still gets the kept lines)
        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=not (enabled and position), leave=False,
                        dynamic_ncols=True)

    def __call__(self, line: str) -> None:
        if not self.enabled:
            return
        if self.echo and self.filter.keep(line):
            tqdm.write(line.rstrip("\n"))  # above the bar, when there is one
        step = self.position(line) if self.position else None
        if step is not None:
            self.bar.update(step - self.bar.n if self.absolute else step)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "Console":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
