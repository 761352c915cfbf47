"""scripts/profile_hessian.py at a tiny size: it runs, writes both files, phases add up, shares sum to one, and
batch norm's double backward is counted as batch norm (not as the element-wise kernels it is made of)."""

import csv

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from scripts import profile_hessian as ph


def test_tiny_profile_writes_markdown_and_csv_with_consistent_numbers(tmp_path):
    out = tmp_path / "prof"
    ph.main(["--task", "all", "--batch", "2", "--tiny", "--rounds", "1", "--warmup", "0", "--profile-steps", "1",
             "--out", str(out)])
    md = (tmp_path / "prof.md").read_text()
    assert "## cifar10_resnet20 (batch 2)" in md and "## ptb_transformer (batch 2)" in md
    rows = list(csv.DictReader(open(tmp_path / "prof.csv")))
    variants = {(r["task"], r["variant"]) for r in rows}
    assert variants == {("cifar10_resnet20", f"{k} / {b}") for k in ("plain", "hessian")
                        for b in ("torch", "fast-bn", "fast-bn+conv")} | {("ptb_transformer", f"{k} / torch")
                                                                          for k in ("plain", "hessian")}
    for task, variant in variants:
        phases = {r["item"]: float(r["value"]) for r in rows
                  if (r["task"], r["variant"]) == (task, variant) and r["kind"] == "phase_ms"}
        assert set(phases) - {"step"} == set(ph.PHASES[variant.split(" / ")[0]])
        assert all(v > 0 for v in phases.values())
        # The phases partition the step (written rounded to 1e-3 ms).
        assert sum(v for k, v in phases.items() if k != "step") == pytest.approx(phases["step"], abs=0.01)
        if variant.startswith("hessian"):
            for scope in ("product", "hessian step"):
                shares = {r["item"]: float(r["value"]) for r in rows if (r["task"], r["variant"]) == (task, variant)
                          and r["kind"] == f"share:{scope}"}
                assert set(shares) == set(ph.FAMILIES)
                assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
                if task == "cifar10_resnet20":
                    assert shares["convolution"] > 0.05 and shares["batch norm"] > 0.01
                else:
                    assert shares["convolution"] == 0 and shares["batch norm"] == 0 and shares["matmul"] > 0.05


@pytest.mark.parametrize("name,family", [
    ("autograd::engine::evaluate_function: NativeBatchNormBackwardBackward0", "batch norm"),
    ("aten::native_batch_norm_backward", "batch norm"),
    ("autograd::engine::evaluate_function: _BatchNormBackwardFnBackward", "batch norm"),
    ("aten::mkldnn_convolution", "convolution"),
    ("ConvolutionBackwardBackward0", "convolution"),
    ("autograd::engine::evaluate_function: _ConvBackwardFnBackward", "convolution"),
    ("aten::_softmax", "attention"),
    ("aten::scaled_dot_product_attention", "attention"),
    ("aten::_log_softmax", None),
    ("autograd::engine::evaluate_function: LogSoftmaxBackward0", None),
    ("autograd::engine::evaluate_function: MmBackward0", "matmul"),
    ("aten::addmm", "matmul"),
    ("aten::mul", None),
])
def test_family_of_name(name, family):
    assert ph.family_of_name(name) == family


def test_double_backward_kernels_count_for_the_operator_that_created_them():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU())
    x = torch.randn(2, 2, 6, 6)
    params = list(model.parameters())
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        g = torch.autograd.grad(model(x).square().mean(), params, create_graph=True)
        torch.autograd.grad(g, params, [torch.ones_like(p) for p in params])
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU]
    fams = ph.classify(events)
    seen = 0
    for e, (fam, _, _, _) in zip(events, fams):
        a = e
        while a is not None and "NativeBatchNormBackwardBackward0" not in a.name:
            a = a.cpu_parent
        if a is not None:  # inside batch norm's double backward: aten::mul, aten::sum, ... all count as batch norm
            assert fam == "batch norm", e.name
            seen += 1
        elif e.name == "aten::threshold_backward":
            assert fam == "element-wise"
    assert seen > 10


@pytest.mark.parametrize("layers", ["torch,fused", "", "fast-conv"])
def test_unknown_layers_are_refused_naming_the_choices(layers, capsys):
    with pytest.raises(SystemExit):
        ph.main(["--task", "cifar10_resnet20", "--layers", layers, "--tiny"])
    err = capsys.readouterr().err
    assert f"--layers={layers} is not allowed" in err and "torch, fast-bn, fast-bn+conv" in err
