"""The fairseq plugin: the estimate and update inside fairseq equal plain PyTorch; training runs for AdaHessian
(with the double backward only on Hessian updates) and AdamW; averaging + generation give a parsed BLEU line."""

from __future__ import annotations

import json
import math
import sys

import pytest

from tasks.translation import average, scoring
from tasks.translation.fairseq_args import PLUGIN_DIR

TINY = ["--arch", "transformer_iwslt_de_en", "--encoder-layers", "1", "--decoder-layers", "1",
        "--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
        "--decoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
        "--share-all-embeddings", "--encoder-normalize-before", "--decoder-normalize-before", "--dropout", "0"]


def test_estimate_and_step_under_fairseq_equal_plain_pytorch(synthetic_bin, run_cmd, repo_root):
    out = run_cmd([sys.executable, str(repo_root / "tests/translation/fairseq_probe.py"), "estimate",
                   str(synthetic_bin)])
    line = next(x for x in out.stdout.splitlines() if x.startswith("PROBE "))
    mean, authors = json.loads(line[len("PROBE "):])
    for c in (mean, authors):
        # fairseq's Trainer.train_step (2 micro-batches, sample-size normalisation, clipping) vs optim.AdaHessian
        # on the loss the semantics names, with the same z: same |z*Hz| and the same parameters after the step.
        assert c["d_rel_err"] < 1e-4, c
        assert c["step_rel_err"] < 1e-4, c
        assert c["param_change"] > 1e-3, c  # the step did move the parameters
    assert mean["clip_coef"] < 0.5, mean  # clipping was active and reached the estimate (mean semantics)
    # The two semantics really differ: the summed loss's curvature is sample_size / clip_coef times larger.
    ratio = authors["d_max"] / mean["d_max"]
    assert math.isclose(ratio, mean["sample_size"] / mean["clip_coef"], rel_tol=1e-3), (ratio, mean)


def _train(run_cmd, bin_dir, save_dir, step_log, optim_args, updates=12):
    argv = [sys.executable, "-m", "fairseq_cli.train", str(bin_dir), "--user-dir", str(PLUGIN_DIR),
            "--task", "translation_suite", "--step-log", str(step_log), *TINY, *optim_args,
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4", "--criterion", "label_smoothed_cross_entropy",
            "--label-smoothing", "0.1", "--batch-size", "32", "--max-update", str(updates), "--cpu",
            "--save-dir", str(save_dir), "--save-interval-updates", "4", "--keep-interval-updates", "2",
            "--validate-interval-updates", "4", "--log-format", "json", "--log-interval", "1", "--seed", "1",
            "--num-workers", "0"]
    out = run_cmd(argv)
    parsed = [scoring.parse_log_line(x) for x in (out.stdout + out.stderr).splitlines()]
    inner = [s for p in parsed if p and p[0] == "train_inner" for s in [p[1]]]
    valid = [s for p in parsed if p and p[0] == "valid" for s in [p[1]]]
    steps = [json.loads(x) for x in step_log.read_text().splitlines()]
    return out, inner, valid, steps


@pytest.fixture(scope="module")
def adamw_run(synthetic_bin, tmp_path_factory, run_cmd):
    d = tmp_path_factory.mktemp("adamw")
    return d, *_train(run_cmd, synthetic_bin, d / "ckpt", d / "steps.jsonl",
                      ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "0.005", "--weight-decay",
                       "0.0001"], updates=16)


def test_adahessian_trains_in_fairseq_with_double_backward_only_on_hessian_updates(synthetic_bin, tmp_path,
                                                                                   run_cmd):
    out, inner, valid, steps = _train(
        run_cmd, synthetic_bin, tmp_path / "ckpt", tmp_path / "steps.jsonl",
        ["--optimizer", "adahessian", "--adahessian-betas", "(0.9, 0.98)", "--block-size", "32", "--lr", "0.047",
         "--weight-decay", "0.0001", "--update-each", "2"])
    text = out.stdout + out.stderr
    # the plugin registered the optimizer (fairseq would reject an unknown --optimizer) with our settings
    assert "'optimizer': {'_name': 'adahessian'" in text and "'loss_semantics': mean" in text
    losses = [float(s["loss"]) for s in inner]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses  # it learns
    assert [s["update"] for s in steps] == list(range(1, 13))
    # update_each=2: the estimate (and the math-attention double backward) on updates 1, 3, 5, ... only
    assert [s["hessian"] for s in steps] == [i % 2 == 0 for i in range(12)]
    assert len(valid) == 3 and all(math.isfinite(float(v["valid_loss"])) for v in valid)
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


def test_adamw_trains_and_never_draws_hessian(adamw_run):
    _, _, inner, valid, steps = adamw_run
    losses = [float(s["loss"]) for s in inner]
    assert len(losses) == 16 and losses[-1] < losses[0]
    assert steps and not any(s["hessian"] for s in steps)
    assert float(valid[-1]["valid_loss"]) < float(valid[0]["valid_loss"])


def test_average_and_generate_give_a_bleu_line_the_record_parses(adamw_run, synthetic_bin, run_cmd):
    d = adamw_run[0]
    paths = average.last_checkpoints(d / "ckpt", 2)
    # 13 batches per epoch: the epoch-1 checkpoint (update 13), then the final update checkpoint of epoch 2
    assert [p.name for p in paths] == ["checkpoint1.pt", "checkpoint_2_16.pt"]
    avg = average.save_average(paths, d / "avg.pt")
    from tasks.translation.fairseq_args import generate_argv

    task = {"src": "de", "tgt": "en",
            "generate": {"beam": 5, "lenpen": 1.0, "batch_size": 7, "args": {"max_len_a": 1.2, "max_len_b": 10}}}
    out = run_cmd([sys.executable, "-m", "fairseq_cli.generate", *generate_argv(task, synthetic_bin, avg, cpu=True)])
    gen = scoring.parse_generate(out.stdout)
    assert len(gen.hyps) == 32  # every test sentence, the trailing partial batch included
    assert gen.fairseq_bleu is not None and gen.beam == 5
    scores = scoring.score_generation(gen, tgt_lang="en", lowercase=True, split_compounds=False)
    # our tokenized BLEU is fairseq's BLEU4 line, recomputed from the H-/T- lines
    assert abs(scores["bleu"] - gen.fairseq_bleu) < 0.01, (scores, gen.fairseq_bleu)
    assert 0.0 <= scores["sacrebleu"] <= 100.0 and scores["n_sentences"] == 32


def test_two_workers_equal_one_process_with_update_freq_2(synthetic_bin, tmp_path, repo_root):
    """legacy_ddp over two gloo CPU ranks: the plugin all-reduces H z with the gradients, so two workers with a
    batch each take exactly the step of one process accumulating both batches (without the all-reduce of H z the
    workers' estimates differ: max parameter difference 0.85 after 4 updates, measured once)."""
    import os
    import socket
    import subprocess

    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = [sys.executable, "-m", "fairseq_cli.train", str(synthetic_bin), "--user-dir", str(PLUGIN_DIR),
              "--task", "translation_suite", *TINY, "--optimizer", "adahessian", "--adahessian-betas", "(0.9, 0.98)",
              "--block-size", "4", "--lr", "0.02", "--lr-scheduler", "fixed", "--criterion",
              "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--batch-size", "16", "--max-update", "3",
              "--cpu", "--seed", "1", "--num-workers", "0", "--no-epoch-checkpoints", "--disable-validation"]
    env = {**os.environ, "PYTHONPATH": str(repo_root), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(common + ["--update-freq", "2", "--save-dir", str(tmp_path / "one")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)]
    for rank in (0, 1):
        procs.append(subprocess.Popen(
            common + ["--save-dir", str(tmp_path / "two"), "--distributed-world-size", "2", "--distributed-rank",
                      str(rank), "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
                      "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-3000:] for e in errs)
    one = torch.load(tmp_path / "one" / "checkpoint_last.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "checkpoint_last.pt", weights_only=False)
    assert one["optimizer_history"][-1]["num_updates"] == two["optimizer_history"][-1]["num_updates"] == 3
    diffs = {k: (one["model"][k] - two["model"][k]).abs().max().item() for k in one["model"]}
    assert max(diffs.values()) == 0.0, diffs
