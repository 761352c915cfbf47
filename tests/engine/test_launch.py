"""engine/launch.py end to end on small synthetic runs: what is refused before a record exists, resume's checks,
the outcomes a run can end in (diverged, interrupted by SIGTERM, failed on a full disk) and the record's
schema-2 fields."""

import errno
import glob
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
from helpers import compose_cfg, sigterm_at_step
from vision_files import write_cifar_python

import engine.resources
import engine.trainer
import tasks.vision
from engine.launch import ConfigError, launch, run_deviations
from engine.session import RunFailed

BASE = ["task=cifar10_resnet20", "optim=sgd"]


def records(tmp_path):
    return [json.loads(open(p).read()) for p in sorted(glob.glob(str(tmp_path / "results/runs/*/*/*.json")))]


def record_files(tmp_path):
    return {p: open(p).read() for p in glob.glob(str(tmp_path / "results/runs/*/*/*.json"))}


def test_non_finite_first_evaluation_with_progress_is_diverged(tmp_path, smoke_overrides, monkeypatch):
    # The progress line formatted best_metric (None after a non-finite evaluation) with :.2f -> "failed".
    monkeypatch.setattr(tasks.vision, "evaluate",
                        lambda *a: {"val_loss": float("nan"), "top1_acc": float("nan")})
    cfg = compose_cfg([*BASE, *smoke_overrides, "trainer.progress=true"])
    assert launch(cfg) == "diverged"
    (rec,) = records(tmp_path)
    assert rec["status"] == "diverged" and "non-finite evaluation" in rec["error"]


@pytest.mark.parametrize("override,message", [
    ("trainer.log_every=0", "trainer.log_every=0 is not allowed; it must be a positive integer"),
    ("trainer.limit_train_batches=-1",
     "trainer.limit_train_batches=-1 is not allowed; it must be null (no limit) or a positive integer"),
    ("trainer.max_steps=0", "trainer.max_steps=0 is not allowed"),
    ("trainer.eval_every=0",
     "trainer.eval_every=0 is not allowed; it must be null (no limit) or a positive integer"),
    ("seed=abc", "seed='abc' is not allowed; it must be a non-negative integer"),
    ("task.eval_batch_size=0", "task.eval_batch_size=0 is not allowed; it must be a positive integer"),
    ("trainer.num_threads=0", "trainer.num_threads=0 is not allowed; use auto or a positive integer"),
    ("trainer.num_workers=many", "trainer.num_workers='many' is not allowed; use auto or a non-negative integer"),
])
def test_bad_value_is_refused_before_a_record(override, message, tmp_path, smoke_overrides):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        launch(compose_cfg([*BASE, *smoke_overrides, override]))
    assert not (tmp_path / "results" / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without CUDA")
@pytest.mark.parametrize("override,message", [
    ("trainer.device=cuda", "trainer.device='cuda' but CUDA is not available here; use auto or cpu"),
    ("trainer.precision=fp16", "trainer.precision='fp16' needs CUDA (GradScaler) but the device is cpu"),
])
def test_cuda_settings_on_a_cpu_machine_are_one_line(override, message, tmp_path, smoke_overrides):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        launch(compose_cfg([*BASE, *smoke_overrides, override]))
    assert not (tmp_path / "results" / "runs").exists()


def test_family_data_check_runs_before_the_record(tmp_path, smoke_overrides, monkeypatch):
    seen = []

    def missing(cfg):
        seen.append(cfg.data.root)
        raise FileNotFoundError("CIFAR-10 not found: looked in /nowhere")

    monkeypatch.setattr(tasks.vision, "check_data", missing, raising=False)
    real = [*BASE, *smoke_overrides, "data.source=real", "data.root=/nowhere"]
    with pytest.raises(FileNotFoundError, match="looked in /nowhere"):
        launch(compose_cfg(real))
    monkeypatch.setattr(tasks.vision, "check_data",
                        lambda cfg: (_ for _ in ()).throw(ValueError("data_batch_1 is truncated")))
    with pytest.raises(ConfigError, match="data_batch_1 is truncated"):
        launch(compose_cfg(real))
    assert seen == ["/nowhere"] and not (tmp_path / "results" / "runs").exists()
    # synthetic data is generated, not checked
    assert launch(compose_cfg([*BASE, *smoke_overrides, "trainer.epochs=1"])) == "completed"


def test_resume_by_id_refuses_another_experiment_and_never_rewrites_a_completed_run(tmp_path, smoke_overrides):
    over = [*BASE, *smoke_overrides, "trainer.epochs=1"]
    assert launch(compose_cfg(over)) == "completed"
    (rec,) = records(tmp_path)
    before = record_files(tmp_path)
    rid = rec["run_id"]
    for extra, message in ((["trainer.epochs=2"], "the run is completed; a finished record is never rewritten"),
                           (["task=cifar10_resnet32"], "the run is completed"),
                           ([], "the run is completed")):
        with pytest.raises(ConfigError, match=message):
            launch(compose_cfg([*over, *extra, f"resume={rid}"]))
        assert record_files(tmp_path) == before  # not rewritten, not even its updated_at

    # an interrupted run: a command that is a different experiment is refused, naming what differs
    path = rec["_path"] if "_path" in rec else next(iter(before))
    data = json.loads(open(path).read())
    data["status"] = "interrupted"
    open(path, "w").write(json.dumps(data))
    before = record_files(tmp_path)
    with pytest.raises(ConfigError, match=r"different experiment from the run; it differs in trainer\.epochs=2 "
                                          r"\(run: 1\)$"):
        launch(compose_cfg([*over, "trainer.epochs=2", f"resume={rid}"]))
    assert record_files(tmp_path) == before
    assert launch(compose_cfg([*over, f"resume={rid}"])) == "completed"  # the same command continues it


def test_resume_refuses_a_run_whose_owner_is_alive_and_takes_over_a_stale_one(tmp_path, smoke_overrides):
    over = [*BASE, *smoke_overrides, "trainer.epochs=1"]
    assert launch(compose_cfg(over)) == "completed"
    (path,) = record_files(tmp_path)
    data = json.loads(open(path).read())
    data["status"] = "running"  # as if this very process (alive) were still training it
    open(path, "w").write(json.dumps(data))
    alive = f"run {data['run_id']} is still running \\(pid {os.getpid()} on this host\\)"
    with pytest.raises(ConfigError, match=alive):
        launch(compose_cfg([*over, "resume=true"]))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data["owner"] = {"host": socket.gethostname(), "pid": dead.pid, "pid_start": "1"}
    open(path, "w").write(json.dumps(data))
    (rec,) = records(tmp_path)
    assert launch(compose_cfg([*over, "resume=true"])) == "completed"
    (after,) = records(tmp_path)
    assert after["run_id"] == rec["run_id"] and after["owner"]["pid"] == os.getpid()


@pytest.mark.parametrize("task", ["cifar10_resnet20", "ptb_transformer"])
def test_sigterm_checkpoints_after_the_step_and_resume_equals_uninterrupted(task, tmp_path, smoke_overrides,
                                                                           monkeypatch):
    if task == "cifar10_resnet20":  # real-format files: random crops and flips draw from the global RNG
        write_cifar_python(tmp_path / "cifar", n_per_batch=8)
        extra = ["optim=adahessian", "data.source=real", f"data.root={tmp_path / 'cifar'}"]
    else:  # dropout draws from the global RNG inside every step
        extra = ["optim=adamw"]
    over = [f"task={task}", *smoke_overrides, "trainer.epochs=2", *extra]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert launch(compose_cfg([*over, f"paths.results_dir={full}/results", f"paths.work_dir={full}/ck"])) == \
        "completed"
    real_step = sigterm_at_step(monkeypatch, 3)  # SIGTERM arrives during the first step of epoch 2
    cut_over = [*over, f"paths.results_dir={cut}/results", f"paths.work_dir={cut}/ck"]
    with pytest.raises(KeyboardInterrupt):
        launch(compose_cfg(cut_over))
    (rec,) = records(cut)
    assert (rec["status"], rec["error"], len(rec["history"])) == ("interrupted", "SIGTERM", 1)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler lives only as long as the run
    (ckpt,) = glob.glob(str(cut / "ck/*/*/*/last.pt"))
    state = torch.load(ckpt, weights_only=True)  # the suite's checkpoints need no pickle
    assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (1, 1, 3)  # the step was finished, then saved
    monkeypatch.setattr(engine.trainer, "train_step", real_step)
    assert launch(compose_cfg([*cut_over, "resume=true"])) == "completed"
    (a,), (b,) = records(full), records(cut)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert b["run_id"] == rec["run_id"] and strip(a["history"]) == strip(b["history"])
    pa = torch.load(glob.glob(str(full / "ck/*/*/*/last.pt"))[0], weights_only=True)["model"]
    pb = torch.load(ckpt, weights_only=True)["model"]
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k


def test_a_requeued_slurm_job_continues_its_interrupted_run(tmp_path, smoke_overrides, monkeypatch):
    over = [*BASE, *smoke_overrides, "trainer.epochs=1"]
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert launch(compose_cfg(over)) == "completed"  # nothing to continue: a requeued job starts normally
    (path,) = record_files(tmp_path)
    data = json.loads(open(path).read())
    data.update(status="running", owner={"host": "node-that-died.invalid", "pid": 1, "pid_start": "1"})
    open(path, "w").write(json.dumps(data))
    assert launch(compose_cfg(over)) == "completed"  # the same command, requeued: it takes the run over
    (rec,) = records(tmp_path)
    assert rec["run_id"] == data["run_id"] and rec["owner"]["host"] == socket.gethostname()
    monkeypatch.delenv("SLURM_RESTART_COUNT")
    data["status"] = "running"
    open(path, "w").write(json.dumps(data))
    with pytest.raises(ConfigError, match="marked running by node-that-died.invalid; if that process is gone, "
                                          f"take the run over with resume={data['run_id']}"):
        launch(compose_cfg([*over, "resume=true"]))


def test_full_disk_during_a_checkpoint_records_failed_with_its_cause(tmp_path, smoke_overrides, monkeypatch):
    def full_disk(obj, path):
        open(path, "wb").write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine.trainer.torch, "save", full_disk)
    with pytest.raises(RunFailed, match="could not write checkpoint .*last.pt: No space left on device"):
        launch(compose_cfg([*BASE, *smoke_overrides, "trainer.epochs=1"]))
    (rec,) = records(tmp_path)
    assert rec["status"] == "failed" and "\n" not in rec["error"]
    assert rec["error"].endswith("last.pt: No space left on device")
    assert glob.glob(str(tmp_path / "checkpoints/*/*/*/*")) == []  # no last.pt.tmp left behind


def test_combined_optimizer_checkpoint_loads_weights_only(tmp_path, smoke_overrides):
    assert launch(compose_cfg(["task=criteo_dlrm", "optim=adahessian", *smoke_overrides,
                               "trainer.epochs=1"])) == "completed"
    (ckpt,) = glob.glob(str(tmp_path / "checkpoints/*/*/*/last.pt"))
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 2 and state["optimizer"]


def test_record_states_its_deviations_from_the_profile_recipe(tmp_path, smoke_overrides):
    assert launch(compose_cfg([*BASE, *smoke_overrides, "optim.lr=0.3"])) == "completed"
    (rec,) = records(tmp_path)
    # smoke_overrides' operational keys (paths, logger, progress, data.source) are not deviations
    assert rec["schema"] == 2 and rec["deviations"] == [
        "optim.lr=0.3", "task.eval_batch_size=16", "trainer.batch_size=8", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1"]


@pytest.mark.parametrize("overrides,expected", [
    (["trainer=paper"], []),
    (["trainer=smoke", "seed=3", "trainer.progress=false", "data.source=synthetic", "paths.results_dir=/x",
      "logger.mode=disabled", "trainer.num_workers=0", "trainer.device=cpu", "data.root=/y"], []),
    (["trainer=paper", "task.epochs=5"], ["task.epochs=5", "trainer.epochs=5"]),
    (["trainer=paper", "trainer.epochs=5", "trainer.limit_train_batches=3"],
     ["trainer.epochs=5", "trainer.limit_train_batches=3"]),
    (["trainer=paper", "optim.betas=[0.8,0.9]", "optim.lr_scale=1"], ["optim.betas=[0.8,0.9]"]),
    (["trainer=smoke", "+optim.extra=1"], ["optim.extra=1"]),
    # Data elsewhere (CPU_DATA=DIR): the translation task's reference path follows paths.data_dir, and is no change
    # of the experiment.
    (["task=iwslt14", "trainer=cpu", "paths.data_dir=/elsewhere"], []),
    (["task=iwslt14", "trainer=cpu", "data.sacrebleu_ref=/refs/test.en", "task.average_last=1"],
     ["task.average_last=1"]),
])
def test_deviations_are_the_non_operational_differences(overrides, expected):
    cfg = compose_cfg(["task=cifar10_resnet20", "optim=adahessian", *overrides])
    from omegaconf import OmegaConf

    assert run_deviations(cfg, OmegaConf.to_container(cfg, resolve=True)) == expected


def test_auto_threads_and_workers_follow_the_free_cores(tmp_path, smoke_overrides, monkeypatch, caplog):
    monkeypatch.setattr(engine.resources.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(engine.resources, "_cgroup_quota", lambda: None)
    monkeypatch.setattr(engine.resources.os, "getloadavg", lambda: (5.5, 0.0, 0.0))
    assert engine.resources.choose("auto", "auto") == (1, 4, "CPU: 1 intra-op thread(s) (auto), 4 data-loader "
                                                       "worker(s) (auto); 8 usable core(s) and 3 free per process")
    monkeypatch.setattr(engine.resources.os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert engine.resources.choose("auto", "auto")[:2] == (4, 4)
    assert engine.resources.choose("auto", 0)[:2] == (8, 0)
    assert engine.resources.choose("auto", "auto", local_processes=4)[:2] == (1, 1)  # torchrun: 2 cores each
    monkeypatch.setattr(engine.resources.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(engine.resources.os, "getloadavg", lambda: (2.3, 0.0, 0.0))  # a busy 2-core machine
    assert engine.resources.choose("auto", "auto")[:2] == (1, 1)
    caplog.set_level("INFO", logger="run")
    launch(compose_cfg([*BASE, *smoke_overrides, "trainer.epochs=1", "trainer.num_threads=auto"]))
    assert torch.get_num_threads() == 1
    assert "CPU: 1 intra-op thread(s) (auto), 0 data-loader worker(s) (0)" in caplog.text
    (rec,) = records(tmp_path)
    assert (rec["config"]["trainer"]["num_threads"], rec["config"]["trainer"]["num_workers"]) == (1, 0)


def test_peak_memory_fields_have_one_meaning(tmp_path, smoke_overrides):
    launch(compose_cfg([*BASE, *smoke_overrides, "trainer.epochs=1"]))
    (rec,) = records(tmp_path)
    assert rec["peak_rss_mb"] > 10  # a process with torch loaded holds far more than 10 MiB
    assert rec["peak_tensor_mb"] is None and "peak_memory_mb" not in rec  # CPU: no allocator count
