# CPU scale: every table and figure on real data, sized for a 2-core CPU (about two hours); docs/cpu_scale.md.
#   make cpu-results CPU_DATA=/path/to/data      (data/<name> by default: cifar10, ptb, iwslt14, criteo_kaggle)
# Resumable: each step is a Hydra multirun with skip_completed=true, so after an interruption the same command runs
# only what has no completed record. CPU_RESULTS_DRY=1: the whole pipeline on synthetic data, 1-2 steps per run.
#   CPU_RESULTS      output folder (runs/, tables/, figures/, notebooks/, RUN.md)   default results/cpu
#   CPU_SEEDS        seeds of the comparison tables 2, 3, 4 and DLRM                default 0
#   CPU_SWEEP_TASK   the task of the LR and block-size sweeps (its 1x / default-block runs are Table 4's)
#                    default ptb_transformer: DLRM is cheaper, but on the 10k-row sample every run of it ends at
#                    the majority-class accuracy (measured for lr x0.5, x1), so it shows no difference
#   CPU_SWEEP_SEEDS  their seeds                                                     default 0
#   CPU_SWEEP_OPTIMS the LR sweep's optimizers; CPU_BLOCK_REFERENCE the block sweep's reference (default: the
#                    sweeps' own, scripts.sweep: AdamW and AdaHessian; AdamW)
#   CPU_LR_VALUES    lr_scale values around the default                              default 0.5,1,2
#   CPU_BLOCK_VALUES AdaHessian block sizes (PTB's default: 4)                       default 1,4,32
#   CPU_SPEED_TASK   Table 8's task                                                  default cifar10_resnet20
#   CPU_VISION_TASKS Table 2's tasks (cifar10_resnet32 has a cpu scale too, ~1.6x the time)  default cifar10_resnet20
#   CPU_EXTRA        more run.py overrides for every run
#   CPU_LAUNCHER     basic (one run at a time) or joblib (N_JOBS runs side by side, default 2; each then takes
#                    one thread, by trainer.num_threads=auto)                                      default basic
#   CPU_WORK         checkpoints (resume points; fairseq's for IWSLT14)                default checkpoints/cpu
#   CPU_THREADS      torch/OpenMP threads per run (OMP_NUM_THREADS); 1 on a machine other jobs share, where
#                    OpenMP threads spinning against them made DLRM steps ~30x slower (measured)  default: torch's
RPY ?= $(or $(PYTHON),python)
CPU_RESULTS ?= results/cpu
CPU_SEEDS ?= 0
CPU_SWEEP_TASK ?= ptb_transformer
CPU_SWEEP_SEEDS ?= 0
CPU_SWEEP_OPTIMS ?=
CPU_BLOCK_REFERENCE ?=
CPU_LR_VALUES ?= 0.5,1,2
CPU_BLOCK_VALUES ?= 1,4,32
CPU_SPEED_TASK ?= cifar10_resnet20
CPU_DATA ?=
CPU_EXTRA ?=
CPU_THREADS ?=
CPU_WORK ?= checkpoints/cpu
CPU_LAUNCHER ?= basic
CPU_VISION_TASKS ?= cifar10_resnet20

# Operational settings only (paths, logger): a record at cpu scale stays exactly its profile's recipe.
_CPU_RUN = logger.mode=disabled paths.work_dir=$(CPU_WORK) $(if $(CPU_DATA),paths.data_dir=$(abspath $(CPU_DATA)))
ifeq ($(CPU_RESULTS_DRY),1)
# Synthetic data of the real shapes, one epoch of 2 steps and 1 evaluation batch per run: minutes in all.
_CPU_SOURCE = synthetic
_CPU_RUN += trainer.epochs=1 trainer.limit_train_batches=2 trainer.limit_val_batches=1 trainer.checkpoint=false
_CPU_SPEED = --steps 1 --warmup 1 --repeats 1 --memory-steps 0 --every 1,2
_CPU_SMALL = trainer.batch_size=8 task.eval_batch_size=64
else
_CPU_SOURCE = real
_CPU_SPEED = --steps 10 --warmup 2 --repeats 2 --memory-steps 2
_CPU_SMALL =
endif
_CPU_OPTS = --scale cpu --data-source $(_CPU_SOURCE) --launcher $(CPU_LAUNCHER) --results-dir $(CPU_RESULTS)

.PHONY: cpu-results cpu-estimate gpu-repro

cpu-results: ## every table/figure at cpu scale on real data (~2 h on 2 cores) in CPU_RESULTS=results/cpu; resumable
	@$(if $(CPU_THREADS),export OMP_NUM_THREADS=$(CPU_THREADS);) mkdir -p $(CPU_RESULTS); rc=0; log=$(CPU_RESULTS)/RUN.md; \
	[ -s $$log ] || echo "# make cpu-results (one section per invocation; a resumed one runs only what is missing)" > $$log; \
	echo "" >> $$log; echo "## invocation" >> $$log; \
	echo "started $$(date -u +%FT%TZ) at commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$$(git diff --quiet 2>/dev/null || echo ' (uncommitted changes)')" >> $$log; \
	echo "command: make cpu-results$(if $(CPU_RESULTS_DRY), CPU_RESULTS_DRY=$(CPU_RESULTS_DRY)) CPU_RESULTS=$(CPU_RESULTS)$(if $(CPU_DATA), CPU_DATA=$(CPU_DATA))$(if $(CPU_EXTRA), CPU_EXTRA='$(CPU_EXTRA)')$(if $(CPU_THREADS), CPU_THREADS=$(CPU_THREADS))$(if $(filter-out basic,$(CPU_LAUNCHER)), CPU_LAUNCHER=$(CPU_LAUNCHER) N_JOBS=$${N_JOBS:-2})" >> $$log; \
	run() { echo "+ $$*"; t0=$$(date +%s); "$$@"; s=$$?; \
	  echo "- $$(date -u +%FT%TZ) exit $$s after $$(( $$(date +%s) - t0 )) s: \`$$*\`" >> $$log; \
	  [ $$s -eq 0 ] || { rc=1; echo "cpu-results: step failed (going on): $$*" >&2; }; }; \
	run $(RPY) -m scripts.sweep compare --tasks $(CPU_VISION_TASKS) --seeds $(CPU_SEEDS) $(_CPU_OPTS) \
	  -- $(_CPU_RUN) $(_CPU_SMALL) $(CPU_EXTRA); \
	run $(RPY) -m scripts.sweep compare --tasks iwslt14 --seeds $(CPU_SEEDS) $(_CPU_OPTS) -- $(_CPU_RUN) $(CPU_EXTRA); \
	run $(RPY) -m scripts.sweep compare --tasks ptb_transformer --seeds $(CPU_SEEDS) $(_CPU_OPTS) \
	  -- $(_CPU_RUN) $(_CPU_SMALL) $(CPU_EXTRA); \
	run $(RPY) -m scripts.sweep compare --tasks criteo_dlrm --seeds $(CPU_SEEDS) $(_CPU_OPTS) -- $(_CPU_RUN) $(CPU_EXTRA); \
	run $(RPY) -m scripts.sweep lr --task $(CPU_SWEEP_TASK) $(if $(CPU_SWEEP_OPTIMS),--optims $(CPU_SWEEP_OPTIMS)) --values $(CPU_LR_VALUES) \
	  --seeds $(CPU_SWEEP_SEEDS) $(_CPU_OPTS) -- $(_CPU_RUN) $(_CPU_SMALL) $(CPU_EXTRA); \
	run $(RPY) -m scripts.sweep block --task $(CPU_SWEEP_TASK) --values $(CPU_BLOCK_VALUES) \
	  $(if $(CPU_BLOCK_REFERENCE),--reference $(CPU_BLOCK_REFERENCE)) --seeds $(CPU_SWEEP_SEEDS) $(_CPU_OPTS) -- $(_CPU_RUN) $(_CPU_SMALL) $(CPU_EXTRA); \
	run $(RPY) -m scripts.speed --task $(CPU_SPEED_TASK) --scale cpu --data-source $(_CPU_SOURCE) $(_CPU_SPEED) \
	  --results-dir $(CPU_RESULTS) -- $(_CPU_RUN) $(_CPU_SMALL) $(CPU_EXTRA); \
	run $(RPY) -m scripts.tables --results-dir $(CPU_RESULTS) --scale cpu; \
	run $(RPY) -m scripts.notebooks --results-dir $(CPU_RESULTS); \
	echo "finished $$(date -u +%FT%TZ)" >> $$log; \
	echo "cpu-results: tables in $(CPU_RESULTS)/tables, figures in $(CPU_RESULTS)/figures, log $$log"; \
	if [ $$rc -ne 0 ]; then echo "cpu-results: some steps failed or left planned runs without a record" >&2; fi; \
	exit $$rc

cpu-estimate: ## time a few steps of every cpu-scale run and print the run-time estimates (CPU_DATA as above)
	$(RPY) -m scripts.cpu_estimate --tasks cifar10_resnet20,ptb_transformer,criteo_dlrm \
	  $(if $(CPU_DATA),-- paths.data_dir=$(abspath $(CPU_DATA)))

gpu-repro: ## on a GPU machine: CIFAR-10 ResNet20 SGD/AdamW/AdaHessian, real data from GPU_PACK (results/gpu/<date>-cifar10)
	bash scripts/gpu_repro.sh
