# AdaHessian experiment suite. `make help` lists the targets; variables are set as `make target VAR=value`.
PYTHON ?= python
.DEFAULT_GOAL := help

.PHONY: help install test lint smoke sync bench profile gpu-checks clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## install the suite and its test/benchmark extras into the current Python (5-10 min on a fresh machine)
	$(PYTHON) -m pip install -e ".[dev,bench]"

test: ## run the test suite (CPU, no data, no network)
	$(PYTHON) -m pytest -q

lint: ## ruff (pyproject.toml's small rule set) over the whole repository
	$(PYTHON) -m ruff check .

smoke: ## a seconds-long CIFAR-10 ResNet20 AdaHessian run on synthetic data
	$(PYTHON) run.py task=cifar10_resnet20 optim=adahessian data.source=synthetic trainer=smoke

sync: ## upload offline W&B runs (results/wandb) once you are online and logged in (`wandb login`)
	wandb sync results/wandb/wandb/offline-run-*

bench: ## optimizer step-time/memory benchmark vs SGD, Adam and other AdaHessian packages (scripts/bench_optim.py)
	$(PYTHON) scripts/bench_optim.py --model all

profile: ## where a Hessian step's time goes: phases and operator families, torch vs fast batch norm and conv (CPU)
	$(PYTHON) -m scripts.profile_hessian --task all

gpu-checks: ## on a CUDA machine: CUDA tests, GPU benchmark, every task on the GPU, IWSLT14 paper config (results/gpu/)
	bash scripts/gpu_checks.sh

clean: ## remove Hydra output folders and Python caches (never results/ or checkpoints/)
	rm -rf outputs multirun .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

-include mk/*.mk
