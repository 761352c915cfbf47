"""The console view of the fairseq subprocesses: chatter hidden, progress shown, harmless warnings silenced."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks.translation.console import WARNING_FILTERS, Console, LogFilter, sentence_done, updates_of
from tasks.translation.launcher import subprocess_env

T = "2026-12-01 21:01:49 | INFO | "
# Lines as fairseq 0.12 prints them (shortened), each with whether a user sees it.
LINES = [
    ("INFO:fairseq_cli.preprocess:Namespace(no_progress_bar=False, log_interval=100)", False),
    ("INFO:fairseq_cli.preprocess:[de] Dictionary: 56 types", False),
    ("INFO:fairseq_cli.preprocess:Wrote preprocessed data to /tmp/x/bin", True),
    (T + "fairseq_cli.train | {'_name': None, 'common': {'_name': None}}", False),
    (T + "fairseq.tasks.translation | [de] dictionary: 56 types", False),
    (T + "fairseq_cli.train | TransformerModel(", False),
    ("  (encoder): TransformerEncoderBase(", False),
    (")", False),
    (T + "fairseq_cli.train | num. shared model params: 23,296 (num. trained: 23,296)", True),
    (T + "fairseq.data.data_utils | loaded 64 examples from: /tmp/x/bin/valid.de-en.de", False),
    (T + "fairseq.trainer | No existing checkpoint found /tmp/x/checkpoint_last.pt", True),
    (T + "fairseq.tasks.fairseq_task | can_reuse_epoch_itr = True", False),
    (T + 'train_inner | {"epoch": 1, "update": 0.008, "loss": "7.315", "num_updates": "1"}', True),
    (T + 'valid | {"epoch": 1, "valid_loss": "6.045", "valid_num_updates": "4"}', True),
    (T + "fairseq.checkpoint_utils | Preparing to save checkpoint for epoch 1 @ 4 updates", False),
    (T + "fairseq.checkpoint_utils | Saved checkpoint /tmp/x/checkpoint_1_4.pt (epoch 1 @ 4 updates)", True),
    (T + "fairseq.data.iterators | grouped total_num_itrs = 125", False),
    ("/site-packages/foo.py:12: UserWarning: something new", True),  # a warning nobody has judged: shown
    ("  warnings.warn(", True),
    ("2026-12-01 21:01:50 | WARNING | fairseq.trainer | NaN or Inf found in input tensor", True),
    (T + "fairseq.tasks.fairseq_task | creating new batches for epoch 1", False),
    ("Traceback (most recent call last):", True),
    ('  File "x.py", line 3, in <module>', True),
    ("RuntimeError: boom", True),
]


def test_log_filter_keeps_progress_and_problems_and_hides_internals():
    f = LogFilter()
    assert [(line, f.keep(line + "\n")) for line, _ in LINES] == LINES


def test_progress_positions_from_fairseq_lines():
    assert updates_of(T + 'train_inner | {"epoch": 1, "loss": "7.3", "num_updates": "12", "lr": "0.1"}') == 12
    assert updates_of(T + 'train | {"epoch": 1, "train_loss": "6.2", "train_num_updates": "8"}') is None
    assert updates_of(T + 'valid | {"epoch": 1, "valid_num_updates": "4"}') is None
    assert [sentence_done(x) for x in ("S-3\tein haus", "T-3\ta house", "H-3\t-0.2\ta house")] == [1, None, None]


def test_console_echoes_kept_lines_and_counts(capsys):
    with Console(True, "translating", "sentence", total=2, echo=False, position=sentence_done) as c:
        for line in ("S-0\ta", "H-0\t-1\tb", "S-1\tc"):
            c(line)
        assert c.bar.n == 2
    with Console(True, "fairseq-train", "update", position=updates_of, absolute=True) as c:
        for line, _ in LINES:
            c(line + "\n")
        assert c.bar.n == 1
    shown = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert shown == [line for line, keep in LINES if keep]
    with Console(False, "quiet", "update", position=updates_of) as c:  # trainer.progress=false: nothing
        c(LINES[12][0])
    assert capsys.readouterr().out == ""


def test_warning_filters_parse_and_silence_exactly_their_warnings():
    # Each filter as the subprocesses get it (PYTHONWARNINGS), against a warning raised with the attribution the
    # real one has (module, category, message); a malformed entry would print "Invalid -W option ignored".
    script = r"""
import warnings
def w(msg, cat, module):
    warnings.warn_explicit(msg, cat, module.replace('.', '/') + '.py', 1, module=module)
w('`torch.jit.script` is deprecated.', FutureWarning, 'torch.jit._script')
w('hydra.experimental.initialize() is no longer experimental.', UserWarning, 'hydra.experimental.initialize')
w('hydra.experimental.compose() is no longer experimental.', UserWarning, 'hydra.experimental.compose')
w("In 'config': Usage of deprecated keyword", UserWarning, 'hydra.core.default_element')
w('The strict flag in the compose API is deprecated.', UserWarning, 'hydra.compose')
w("'config' is validated against ConfigStore schema", UserWarning, 'runpy')
w("'pin_memory' argument is set as true but no accelerator is found, then ...", UserWarning, 'torch.utils.data.x')
w('`torch.cuda.amp.autocast(args...)` is deprecated. Please use ...', FutureWarning, 'fairseq.tasks.fairseq_task')
w('Support for mismatched key_padding_mask and attn_mask is deprecated.', UserWarning, 'torch.nn.functional')
w('KEEP: an unrelated warning from torch', FutureWarning, 'torch.nn.functional')
w('KEEP: an unrelated warning from hydra', FutureWarning, 'hydra.compose')
"""
    env = subprocess_env()
    assert env["PYTHONWARNINGS"].split(",")[: len(WARNING_FILTERS)] == list(WARNING_FILTERS)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    lines = [x for x in proc.stderr.splitlines() if "Warning" in x or "Invalid" in x]
    assert len(lines) == 2 and all("KEEP:" in x for x in lines), proc.stderr


@pytest.mark.slow
def test_synthetic_iwslt_run_console_is_short_warning_free_and_shows_progress(tmp_path, run_cmd):
    out = run_cmd([sys.executable, "run.py", "task=iwslt14", "optim=adam", "trainer=smoke", "data.source=synthetic",
                   "logger.mode=disabled", "trainer.progress=true", f"paths.results_dir={tmp_path / 'results'}",
                   f"paths.work_dir={tmp_path / 'ckpt'}"], timeout=300)
    text = out.stdout + out.stderr
    lines = [x for x in text.replace("\r", "\n").splitlines() if x.strip() and "it/s]" not in x]
    assert "Warning" not in text and "warnings.warn" not in text, text[-3000:]
    assert "translating the test set" in text and "fairseq-train" in text  # the progress bars
    assert sum('| train_inner |' in x for x in lines) == 8 and sum("| valid |" in x for x in lines) == 2
    assert "TransformerModel(" not in text and "can_reuse_epoch_itr" not in text
    logged = [x for x in lines if " | INFO | " in x or x.startswith("INFO:")]
    assert len(logged) < 35, "\n".join(logged)
