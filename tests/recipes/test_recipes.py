"""Every paper-scale recipe value has a source, docs/recipes.md is current, and the issue-9 defaults are what the
composed configs (and, for translation, the fairseq command lines) actually use.

Generic over conf/: every (task, optimizer) with a conf/task_optim file is checked, so a new task or optimizer is
covered as soon as its config exists.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

from engine.launch import _experiment_fields
from engine.record import experiment_key
from engine.schedules import Schedule
from scripts import recipes
from tasks.translation.fairseq_args import train_plan

PAIRS = recipes.pairs()


def _value(argv, flag):
    return argv[argv.index(flag) + 1]


def _argv(task, optim, *overrides):
    return train_plan(recipes.compose(task, optim, overrides), "BIN", "SAVE", "STEPS", 1).argv


def _pairs_of(task):
    return [o for t, o in PAIRS if t == task]


# ---- provenance

@pytest.mark.parametrize("task,optim", PAIRS, ids=[f"{t}-{o}" for t, o in PAIRS])
def test_every_recipe_value_of_every_pair_has_a_source(task, optim):
    assert recipes.check_pair(task, optim) == []


def test_the_pairs_cover_every_task_and_the_papers_optimizers():
    tasks = {t for t, _ in PAIRS}
    assert tasks == set(recipes.tasks())
    assert {"sgd", "adam", "adamw", "adahessian"} <= set(_pairs_of("cifar10_resnet20"))


def test_each_file_sources_only_its_own_sections():
    assert recipes.check_files() == []


def test_the_checker_fails_on_a_missing_a_malformed_and_a_dangling_source():
    task, optim = "cifar10_resnet20", "adahessian"
    cfg = recipes.compose(task, optim, ("+task.new_knob=3", "+optim.new_knob=0.5", "+data.mixup=0.2"))
    problems = "\n".join(recipes.check_pair(task, optim, cfg))
    assert "task.new_knob has no source" in problems and "conf/task/cifar10_resnet20.yaml" in problems
    assert "optim.new_knob has no source" in problems and "conf/task_optim/cifar10_resnet20_adahessian" in problems
    assert "data.mixup has no source" in problems
    bad = recipes.compose(task, optim, ("sources.optim.lr='somewhere in the paper'", "+sources.optim.gone='paper: x'"))
    problems = "\n".join(recipes.check_pair(task, optim, bad))
    assert "sources.optim.lr='somewhere in the paper' is not '<kind>: <citation>'" in problems
    assert "sources.optim.gone names no config value" in problems
    # operational keys need no source
    ok = recipes.compose(task, optim, ("trainer.num_workers=0", "data.source=synthetic", "optim.lr_scale=3"))
    assert recipes.check_pair(task, optim, ok) == []


def test_interpolated_values_are_sourced_where_they_come_from():
    cfg = recipes.compose("imagenet_resnet18", "sgd")
    assert recipes.alias("trainer.epochs", cfg) == "task.epochs"
    assert recipes.alias("task.schedule.patience", cfg) == "task.schedules.plateau.patience"
    assert recipes.alias("task.epochs", cfg) is None
    step = recipes.compose("imagenet_resnet18", "sgd", ("task.schedule_preset=step",))
    assert recipes.alias("task.schedule.milestones", step) == "task.schedules.step.milestones"
    assert recipes.check_pair("imagenet_resnet18", "sgd", step) == []


def test_docs_recipes_md_is_current():
    assert recipes.DOC.read_text() == recipes.render(), "docs/recipes.md is stale: run `python -m scripts.recipes`"


def test_the_doc_has_a_table_per_task_a_column_per_optimizer_and_every_disagreement():
    doc = recipes.DOC.read_text()
    for task in recipes.tasks():
        section = doc.split(f"## {task}\n", 1)[1].split("\n## ", 1)[0]
        header = next(line for line in section.splitlines() if line.startswith("| setting | ") and "source" not in line)
        assert header == "| setting | " + " | ".join(_pairs_of(task)) + " |"
    cifar = doc.split("## cifar10_resnet20\n")[1].splitlines()
    lr_row = next(line for line in cifar if line.startswith("| `optim.lr`"))
    assert "`0.15`<br>paper: Table 2" in lr_row and "`0.1`<br>code: image_classification/config" in lr_row
    for entry in recipes.load_disagreements():
        assert f"### {entry['topic']}\n" in doc


def test_every_disagreement_override_composes_and_changes_its_setting():
    for entry in recipes.load_disagreements():
        for task in entry["tasks"]:
            if not entry.get("overrides") or not entry.get("setting"):
                continue
            optim = "adahessian" if "adahessian" in _pairs_of(task) else _pairs_of(task)[0]
            default = recipes.compose(task, optim)
            other = recipes.compose(task, optim, tuple(entry["overrides"]))
            found, before = recipes._get(default, entry["setting"])
            assert found, f"{entry['topic']}: {entry['setting']} is not in {task}'s config"
            assert recipes._get(other, entry["setting"])[1] != before, entry["topic"]


def test_the_generator_writes_the_doc_and_check_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "DOC", tmp_path / "recipes.md")
    assert recipes.main([]) == 0 and (tmp_path / "recipes.md").read_text() == recipes.render()
    assert recipes.main(["--check"]) == 0
    (tmp_path / "recipes.md").write_text("old\n")
    assert recipes.main(["--check"]) == 1


def test_sources_are_not_part_of_the_experiment_key():
    a = recipes.compose("iwslt14", "adamw")
    b = recipes.compose("iwslt14", "adamw", ("sources.optim.lr='paper: another citation'",))
    assert "sources" not in _experiment_fields(a)
    assert experiment_key(_experiment_fields(a)) == experiment_key(_experiment_fields(b))
    c = recipes.compose("iwslt14", "adamw", ("optim.lr=0.002",))
    assert experiment_key(_experiment_fields(a)) != experiment_key(_experiment_fields(c))


def test_cfg_job_shows_the_recipe_with_its_sources():
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "run.py", "task=iwslt14", "optim=adahessian", "--cfg", "job"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "dropout_preset: code" in p.stdout and "hessian_semantics: authors" in p.stdout
    assert "\nsources:\n" in p.stdout and "block_size: 'paper: App. D(b), block size 32" in p.stdout


# ---- the issue-9 defaults, as composed and as passed to fairseq

@pytest.mark.parametrize("optim", _pairs_of("iwslt14"))
def test_iwslt14_runs_the_authors_dropout_and_semantics(optim):
    a = _argv("iwslt14", optim)
    assert (float(_value(a, "--dropout")), float(_value(a, "--attention-dropout")),
            float(_value(a, "--activation-dropout"))) == (0.3, 0.1, 0.1)
    assert ("--loss-semantics" in a) == (optim in ("adahessian", "sophiah"))
    if optim == "adahessian":
        assert _value(a, "--loss-semantics") == "authors"
    wd = {"adahessian": 1e-4, "adamw": 1e-4, "adam": 0.0, "sgd": 1e-4, "sophiah": 1e-4}[optim]
    assert float(_value(a, "--weight-decay")) == wd
    paper = _argv("iwslt14", optim, "task.model.dropout_preset=paper")
    assert float(_value(paper, "--dropout")) == 0.0 and float(_value(paper, "--attention-dropout")) == 0.0


@pytest.mark.parametrize("optim", _pairs_of("wmt14"))
def test_wmt14_same_weight_decay_and_the_authors_semantics(optim):
    a = _argv("wmt14", optim)
    assert float(_value(a, "--weight-decay")) == 0.0  # AdamW (Wang et al.) has none; Sec. IV-A: the same for all
    assert float(_value(a, "--dropout")) == 0.1
    if optim == "adahessian":
        assert _value(a, "--loss-semantics") == "authors"
        assert _value(_argv("wmt14", optim, "task.hessian_semantics=mean"), "--loss-semantics") == "mean"


@pytest.mark.parametrize("task", ["wmt14", "ptb_transformer"])
def test_weight_decay_is_the_same_across_the_papers_optimizers(task):
    decays = {o: recipes.compose(task, o)["optim"]["weight_decay"] for o in _pairs_of(task) if o != "adam"}
    assert set(decays.values()) == {0.0}, decays


def test_imagenet_plateau_decay_with_pytorchs_defaults_by_default_and_step_one_override_away():
    s = recipes.compose("imagenet_resnet18", "adahessian")["task"]["schedule"]
    defaults = inspect.signature(torch.optim.lr_scheduler.ReduceLROnPlateau).parameters
    assert s["name"] == "plateau" and s["monitor"] == "val_loss"
    for k in ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr"):
        assert s[k] == defaults[k].default, k
    step = recipes.compose("imagenet_resnet18", "adahessian", ("task.schedule_preset=step",))["task"]["schedule"]
    assert step == {"name": "multistep", "milestones": [30, 60], "gamma": 0.1}


def test_the_plateau_schedule_follows_its_own_mode_and_decays_after_patience_epochs():
    s = recipes.compose("imagenet_resnet18", "sgd")["task"]["schedule"]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = Schedule(s, opt, total_steps=100, higher_is_better=True)  # top-1 is higher-is-better; the loss is not
    assert sched.monitor == "val_loss" and sched.sched.mode == "min"
    for loss in (3.0, 2.0, 1.0):  # a falling loss: no decay
        sched.after_epoch(loss)
    for _ in range(10):  # 10 epochs without improvement: patience 10 not yet exceeded
        sched.after_epoch(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    sched.after_epoch(1.0)  # the 11th
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_ptb_label_smoothing_and_the_ref_35_adamw():
    for optim in _pairs_of("ptb_transformer"):
        assert recipes.compose("ptb_transformer", optim)["task"]["label_smoothing"] == 0.1
    o = recipes.compose("ptb_transformer", "adamw")["optim"]
    assert (o["lr"], o["betas"], o["eps"], o["weight_decay"]) == (2.5e-4, [0.9, 0.999], 1e-8, 0.0)


def test_wmt14_preparation_validates_on_newstest2013_by_default(tmp_path):
    from tasks.translation import prepare

    orig = tmp_path / "orig"
    pairs = {"en": ["a house .", "the cat sat .", "we go home ."], "de": ["ein Haus .", "die Katze sass .",
                                                                        "wir gehen heim ."]}
    for corpus in prepare.WMT14_CORPORA:
        for lang, lines in pairs.items():
            (orig / f"{corpus}.{lang}").parent.mkdir(parents=True, exist_ok=True)
            (orig / f"{corpus}.{lang}").write_text("\n".join(lines * 40) + "\n")
    (orig / "dev").mkdir()
    # newstest2013 stand-in: new sentences of training words (whole BPE tokens, so no length filter drops them)
    (orig / "dev" / "newstest2013.en").write_text("the house sat .\nwe go .\n")
    (orig / "dev" / "newstest2013.de").write_text("die Haus sass .\nwir gehen .\n")
    (orig / "test-full").mkdir()
    for kind, lang, text in (("src", "en", "a test"), ("ref", "de", "ein Test")):
        (orig / "test-full" / f"newstest2014-deen-{kind}.{lang}.sgm").write_text(f'<seg id="1">{text}</seg>\n')
    out = prepare.prepare_wmt14(orig, tmp_path / "out", merges=200, do_binarize=False)
    valid = [line.replace("@@ ", "") for line in (out / "tokenized" / "valid.en").read_text().splitlines()]
    assert valid == ["the house sat .", "we go ."]
    train_lines = (out / "tokenized" / "train.en").read_text().splitlines()
    assert len(train_lines) == 3 * 3 * 40  # every training line stays in train
    out2 = prepare.prepare_wmt14(orig, tmp_path / "out2", merges=200, do_binarize=False, valid_from="train")
    assert len((out2 / "tokenized" / "valid.en").read_text().splitlines()) == 3 * 3 * 40 // 100


def test_a_plateau_monitor_that_is_no_validation_score_fails_the_run_naming_it(tmp_path, smoke_overrides):
    from helpers import compose_cfg

    from engine.launch import launch

    cfg = compose_cfg(["task=imagenet_resnet18", "optim=sgd", *smoke_overrides, "trainer.epochs=1",
                       "trainer.limit_train_batches=1", "data.synthetic.image_size=32",
                       "task.schedules.plateau.monitor=val_los"])
    with pytest.raises(ValueError, match=r"task.schedule.monitor='val_los' is not a validation score; choose one of "
                                         r"val_loss, top1_acc"):
        launch(cfg)
