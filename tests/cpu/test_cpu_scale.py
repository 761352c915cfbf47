"""The cpu scale: trainer=cpu composes each task's shrink (conf/task_scale/<task>_cpu.yaml) over the paper's recipe,
keeps the paper's optimizer settings, states every shrink with a source, and runs on real-format files."""

import glob
import json

import pytest
import torch
from helpers import CONF, compose_cfg
from omegaconf import OmegaConf
from torch.utils.data import Dataset
from vision_files import CLASSES, write_image_folder

from engine.launch import launch
from tasks.vision.data import class_balanced_subset

CPU_TASKS = sorted(p.stem.removesuffix("_cpu") for p in (CONF / "task_scale").glob("*_cpu.yaml"))
SCALED = [p.stem.rsplit("_", 1) for p in sorted((CONF / "task_scale").glob("*.yaml"))]  # (task, trainer profile)
PAIRS = [(t, p.stem.removeprefix(f"{t}_"), s) for t, s in SCALED for p in (CONF / "task_optim").glob(f"{t}_*.yaml")]


def leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_every_table_task_has_a_cpu_scale():
    assert {"cifar10_resnet20", "iwslt14", "ptb_transformer", "criteo_dlrm"} <= set(CPU_TASKS)


@pytest.mark.parametrize("task,optim,scale", PAIRS)
def test_scale_keeps_the_paper_optimizer_and_shrinks_only_what_it_states(task, optim, scale):
    paper = OmegaConf.to_container(compose_cfg([f"task={task}", f"optim={optim}"]), resolve=True)
    cpu = OmegaConf.to_container(compose_cfg([f"task={task}", f"optim={optim}", f"trainer={scale}"]), resolve=True)
    assert cpu["trainer"]["name"] == scale and cpu["trainer"]["device"] == {"cpu": "cpu", "gpu": "cuda"}[scale]
    assert cpu["optim"] == paper["optim"]  # the same optimizer with the paper's hyperparameters
    assert cpu["task"]["metric"] == paper["task"]["metric"] and cpu["data"]["source"] == "real"
    shrink = OmegaConf.to_container(OmegaConf.load(CONF / "task_scale" / f"{task}_{scale}.yaml"))
    sources = dict(leaves(shrink.pop("sources")))
    for key, value in leaves(shrink):
        src = next((s for k, s in sources.items() if key == k or key.startswith(k + ".")), None)
        assert src and src.startswith(f"ours: {scale} scale, "), f"{task}: {key} has no 'ours: {scale} scale' source"
        assert OmegaConf.select(OmegaConf.create(cpu), key) == value  # the shrink is what runs
    # everything else of the task is the paper's (the profile may change only what its file states)
    for key, value in leaves(paper["task"], "task."):
        if not any(key == k or key.startswith(k + ".") for k in dict(leaves(shrink))):
            assert OmegaConf.select(OmegaConf.create(cpu), key) == value, key


@pytest.mark.parametrize("task,scale", [("cifar10_resnet20", "cpu"), ("cifar10_resnet32", "cpu"),
                                        ("cifar10_resnet20", "gpu")])
def test_cifar_schedule_keeps_the_papers_shape(task, scale):
    paper, cpu = compose_cfg([f"task={task}"]), compose_cfg([f"task={task}", f"trainer={scale}"])
    frac = lambda c: [m / c.trainer.epochs for m in c.task.schedule.milestones]  # noqa: E731
    assert frac(cpu) == frac(paper) == [0.5, 0.75] and cpu.trainer.epochs < paper.trainer.epochs


def test_other_profiles_are_untouched():
    for trainer in ("paper", "smoke"):
        cfg = compose_cfg(["task=cifar10_resnet20", f"trainer={trainer}"])
        assert cfg.task.epochs == 160 and "train_per_class" not in cfg.data


class Labelled(Dataset):
    def __init__(self, targets):
        self.targets = targets

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return i, self.targets[i]


def test_class_balanced_subset_takes_the_first_images_of_each_class():
    targets = [2, 0, 1, 0, 2, 2, 1, 0, 1, 0]
    sub = class_balanced_subset(Labelled(targets), 2)
    assert sub.indices == [0, 1, 2, 3, 4, 6]  # class 0: 1, 3; class 1: 2, 6; class 2: 0, 4
    with pytest.raises(ValueError, match=r"data.train_per_class=4 .* 1\.\.3"):
        class_balanced_subset(Labelled(targets), 4)


def test_cpu_scale_cifar_run_on_an_image_folder(tmp_path):
    """trainer=cpu end to end on a CIFAR-10 image-folder copy written here: the class-balanced subset is what
    trains, the whole test set is evaluated, the record says scale cpu on real data."""
    root = tmp_path / "cifar10"
    write_image_folder(root, ["train"], CLASSES, n=5)
    write_image_folder(root, ["test"], CLASSES, n=3, seed=1)
    cfg = compose_cfg(["task=cifar10_resnet20", "optim=adahessian", "trainer=cpu", f"data.root={root}",
                       "data.train_per_class=2", "trainer.batch_size=8", "trainer.epochs=2",
                       "task.schedule.milestones=[1]", "task.eval_batch_size=16",
                       f"paths.results_dir={tmp_path / 'results'}", f"paths.work_dir={tmp_path / 'ck'}",
                       "logger.mode=disabled"])
    assert launch(cfg) == "completed"
    (path,) = glob.glob(str(tmp_path / "results/runs/*/*/*.json"))
    rec = json.load(open(path))
    assert (rec["scale"], rec["data_source"], rec["optim"]) == ("cpu", "real", "adahessian")
    assert [h["step"] for h in rec["history"]] == [3, 6]  # 20 images (2 per class) in batches of 8
    assert all(h["top1_acc"] * 30 / 100 == pytest.approx(round(h["top1_acc"] * 30 / 100)) for h in rec["history"])
    assert rec["history"][1]["lr"] == pytest.approx(0.015)  # x0.1 after the first of two epochs
    assert rec["timing"]["n_hessian_steps"] == 6


def write_criteo_text(path, n):
    """Kaggle dac train.txt lines: label, 13 integer fields, 26 hex categorical fields (some empty)."""
    g = torch.Generator().manual_seed(0)
    lines = []
    for _ in range(n):
        ints = [str(int(v)) if v >= 0 else "" for v in torch.randint(-2, 50, (13,), generator=g)]
        cats = ["" if v == 0 else f"{int(v) * 7919:08x}" for v in torch.randint(0, 6, (26,), generator=g)]
        lines.append("\t".join([str(int(torch.rand(1, generator=g) < 0.25)), *ints, *cats]) + "\n")
    path.write_text("".join(lines))
    return path


def write_ptb_text(root):
    root.mkdir(parents=True)
    words = ["the", "cat", "sat", "on", "mat", "<unk>", "a", "dog", "N"]
    g = torch.Generator().manual_seed(0)
    for split, n_lines in (("train", 200), ("valid", 40), ("test", 40)):
        lines = [" " + " ".join(words[i] for i in torch.randint(0, 9, (6,), generator=g).tolist()) + " \n"
                 for _ in range(n_lines)]
        (root / f"ptb.{split}.txt").write_text("".join(lines))


def test_cpu_scale_dlrm_run_on_a_prepared_click_log(tmp_path):
    """The cpu recipe unchanged (one pass in 10 evaluated segments) on a prefix written in Criteo's raw format."""
    from tasks.recommendation.data import prepare

    root = tmp_path / "criteo_kaggle"
    prepare(write_criteo_text(tmp_path / "head.txt", 1400), root, log=lambda *_: None)
    cfg = compose_cfg(["task=criteo_dlrm", "optim=adahessian", "trainer=cpu", f"paths.data_dir={tmp_path}",
                       f"paths.results_dir={tmp_path / 'results'}", f"paths.work_dir={tmp_path / 'ck'}",
                       "logger.mode=disabled"])
    assert launch(cfg) == "completed"
    (path,) = glob.glob(str(tmp_path / "results/runs/*/*/*.json"))
    rec = json.load(open(path))
    assert rec["scale"] == "cpu" and rec["extra"]["recommendation"]["train_rows"] == 1200  # days 1-6 of 7 x 200
    assert [h["step"] for h in rec["history"]][-1] == 10 and len(rec["history"]) == 10  # 10 batches of 128, 10 parts


def test_cpu_scale_ptb_run_on_text_files(tmp_path):
    """The cpu model width and warmup on PTB-format text files written here (one epoch, tiny batches)."""
    write_ptb_text(tmp_path / "ptb")
    cfg = compose_cfg(["task=ptb_transformer", "optim=adahessian", "trainer=cpu", f"paths.data_dir={tmp_path}",
                       "trainer.batch_size=4", f"paths.results_dir={tmp_path / 'results'}",
                       f"paths.work_dir={tmp_path / 'ck'}", "logger.mode=disabled"])
    assert launch(cfg) == "completed"
    (path,) = glob.glob(str(tmp_path / "results/runs/*/*/*.json"))
    rec = json.load(open(path))
    lm = rec["extra"]["language_model"]
    assert rec["scale"] == "cpu" and lm["model"]["d_model"] == 128 and lm["vocab_size"] == 10  # 9 words + <eos>
    assert len(rec["history"]) == 1 and rec["history"][0]["test_ppl"] > 1


def test_cpu_scale_iwslt14_run_on_a_binarized_corpus(tmp_path):
    """The cpu recipe on fairseq's binarized format (written here by fairseq-preprocess's own code): the small
    transformer trains on the valid split, its curve is measured on test, the last 2 of 4 epochs are averaged and
    beam-searched BLEU is computed on the test split. fairseq runs in a subprocess, as in tests/translation."""
    import os
    import subprocess
    import sys

    from engine.record import iter_records
    from tasks.translation.prepare import binarize
    from tasks.translation.synthetic import SyntheticSpec, write_corpus

    write_corpus(tmp_path / "raw", SyntheticSpec(n_train=16, n_valid=48, n_test=16, seed=3), src="de", tgt="en")
    binarize(tmp_path / "raw", tmp_path / "iwslt14" / "data-bin", "de", "en")
    env = {**os.environ, "PYTHONPATH": str(CONF.parent), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    proc = subprocess.run([sys.executable, "run.py", "task=iwslt14", "optim=adamw", "trainer=cpu",
                           f"paths.data_dir={tmp_path}", f"paths.results_dir={tmp_path / 'results'}",
                           f"paths.work_dir={tmp_path / 'ck'}", "logger.mode=disabled", "trainer.progress=false"],
                          cwd=CONF.parent, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = list(iter_records(tmp_path / "results"))
    assert (rec["status"], rec["scale"], rec["data_source"], rec["deviations"]) == ("completed", "cpu", "real", [])
    argv = rec["extra"]["fairseq_train_argv"]
    assert argv[argv.index("--train-subset") + 1] == "valid" and argv[argv.index("--valid-subset") + 1] == "test"
    assert argv[argv.index("--encoder-embed-dim") + 1] == "128" and argv[argv.index("--encoder-layers") + 1] == "2"
    assert len(rec["extra"]["averaged_checkpoints"]) == 2
    curve = rec["history"][:-1]  # one row per epoch, measured on the test split; then the averaged model's BLEU
    assert [(r["epoch"], r["val_subset"]) for r in curve] == [(e, "test") for e in (1, 2, 3, 4)]
    assert all(r["val_loss"] > 0 for r in curve)
    assert rec["extra"]["bleu"]["n_sentences"] == 16  # every test sentence was translated
    assert 0.0 <= rec["history"][-1]["bleu"] <= 100.0
