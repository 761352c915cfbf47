"""Figures: one palette from the optimizer registry, legend entries, integer ticks, a y-range floor."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest

from scripts.report import figures as F

matplotlib.use("Agg")


@pytest.fixture
def captured(monkeypatch):
    """The figure a plot function makes, kept open for inspection instead of only saved."""
    figs = []

    def keep(fig, path):
        figs.append(fig)
        return path

    monkeypatch.setattr(F, "_save", keep)
    return figs


def test_one_colour_per_optimizer_from_the_registry():
    from optim import OPTIMIZERS

    colours = [F.optim_color(o) for o in OPTIMIZERS]
    assert len(set(colours)) == len(colours)  # every registered optimizer has its own colour
    assert F.optim_color("adahessian") == F.optim_color("adahessian")
    # an optimizer outside the registry (an import path) still gets a colour, not the default cycle's
    assert F.optim_color("torch.optim:NAdam").startswith("#")


def test_curves_legend_ticks_and_y_floor(captured):
    # SGD and AdaHessian ran (3 epochs, values near 10% = chance); the paper also publishes Adam, which has no run
    rows = []
    for optim, base in [("sgd", 10.0), ("adahessian", 10.05)]:
        for seed in range(2):
            for ep in range(3):
                rows.append({"task": "cifar10_resnet20", "optim": optim, "run_id": f"{optim}{seed}", "epoch": ep,
                             "metric": base + 0.02 * seed + 0.01 * ep, "metric_name": "top1_acc"})
    pub = pd.DataFrame({"optim": ["sgd", "adam", "adahessian"], "mean": [92.08, 90.33, 92.13]})
    F.plot_curves(pd.DataFrame(rows), "cifar10_resnet20", "t", "unused.png")
    ax = captured[-1].axes[0]
    # integer epoch ticks only
    assert all(float(t).is_integer() for t in ax.get_xticks())
    # a 0.1-wide spread at ~10 (seed noise at chance level) is not blown up to the full height: the axis spans
    # at least 5% of the level (matplotlib alone would give about 0.12)
    lo, hi = ax.get_ylim()
    assert hi - lo >= 0.049 * hi
    F.plot_curves(pd.DataFrame(rows), "cifar10_resnet20", "t", "unused.png", published=pub)
    ax = captured[-1].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["SGD (n=2)", "AdaHessian (n=2)", "SGD published (final)", "AdaHessian published (final)"]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert matplotlib.colors.to_hex(lines["SGD published (final)"].get_color()) == F.optim_color("sgd")
    assert matplotlib.colors.to_hex(lines["SGD (n=2)"].get_color()) == F.optim_color("sgd")


def test_evaluations_inside_an_epoch_keep_their_fractional_positions(captured):
    # trainer.eval_every: a one-epoch run evaluated 5 times, drawn where it was evaluated, with readable ticks
    # (integer ticks alone would leave a lone "1")
    rows = [{"task": "ptb_transformer", "optim": "sgd", "run_id": "r", "epoch": e, "metric": 700 - 100 * e,
             "metric_name": "test_ppl"} for e in (0.2, 0.4, 0.6, 0.8, 1)]
    F.plot_curves(pd.DataFrame(rows), "ptb_transformer", "t", "unused.png")
    ax = captured[-1].axes[0]
    assert list(ax.get_lines()[0].get_xdata()) == [0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = [t for t in ax.get_xticks() if 0.2 <= t <= 1.0]
    assert len(ticks) >= 3 and any(not float(t).is_integer() for t in ticks)


@pytest.mark.parametrize("subset,label", [(None, "val_loss (bleu is evaluated once, at the end)"),
                                          ("test", "test loss (bleu is evaluated once, at the end)")])
def test_translation_curve_is_the_loss_labelled_with_its_split(subset, label):
    # BLEU once at the end: the curve is the validation loss; the cpu scale validates on test and says so.
    rows = [{"task": "iwslt14", "optim": "adamw", "run_id": "r", "epoch": e, "val_loss": 9.0 - e,
             "metric_name": "bleu", **({"val_subset": subset} if subset else {})} for e in (1, 2)]
    rows.append({"task": "iwslt14", "optim": "adamw", "run_id": "r", "metric": 0.0, "metric_name": "bleu"})
    assert F.curve_column(pd.DataFrame(rows)) == ("val_loss", label)
