# Reports: tables, sweeps, speed, notebooks and the smoke-scale demo (scripts/tables.py, sweep.py, speed.py,
# notebooks.py; docs/reports.md). Variables: `make sweep-lr TASK=iwslt14 SEEDS=0,1,2 SCALE=paper LAUNCHER=joblib`.
#   RESULTS   results folder (runs/ in it; tables/ and figures/ written beside)      default results
#   TASK      task config name (sweep-lr/-block: iwslt14; sweep-every/speed: cifar10_resnet20)
#   SEEDS     comma list, default 0,1,2        SCALE  trainer profile: paper | smoke (default paper)
#   LAUNCHER  basic | joblib | submitit_slurm  OPTIMS comma list of optimizers (default: the paper's)
#   VALUES    comma list overriding the swept values        DATA  real | synthetic (default by SCALE)
#   FORCE=1   re-run completed runs too        REPORT_ONLY=1  no runs, only the table and figure
#   EXTRA     more run.py overrides, e.g. EXTRA="trainer.epochs=1 logger.mode=disabled"
RPY = $(or $(PYTHON),python)
RESULTS ?= results
# Defaults with commas are set with ?= : $(or $(SEEDS),0,1,2) would split at the commas and give "0".
SEEDS ?= 0,1,2
SCALE ?= paper
_SCALE = $(SCALE)
_SWEEP_OPTS = --seeds $(SEEDS) --scale $(_SCALE) --launcher $(or $(LAUNCHER),basic) --results-dir $(RESULTS) \
  $(if $(OPTIMS),--optims $(OPTIMS)) $(if $(VALUES),--values $(VALUES)) $(if $(DATA),--data-source $(DATA)) \
  $(if $(FORCE),--force) $(if $(REPORT_ONLY),--report-only) $(if $(EXTRA),-- $(EXTRA))

.PHONY: tables sweep-lr sweep-block sweep-every compare speed notebooks demo demo-clean

tables: ## Tables 2/3/4 + DLRM (md, csv, tex) and training curves from every run record in RESULTS=results
	$(RPY) -m scripts.tables --results-dir $(RESULTS)

sweep-lr: ## LR robustness, Table 6 + figure: TASK=iwslt14 SEEDS SCALE LAUNCHER [OPTIMS=adamw,adahessian] [FORCE=1]
	$(RPY) -m scripts.sweep lr --task $(or $(TASK),iwslt14) $(_SWEEP_OPTS)

sweep-block: ## AdaHessian block size 1..128 + AdamW, Table 7 + figure: TASK=iwslt14 SEEDS SCALE LAUNCHER
	$(RPY) -m scripts.sweep block --task $(or $(TASK),iwslt14) $(_SWEEP_OPTS)

sweep-every: ## AdaHessian runs with the Hessian every N=1..5 steps (Table 8's metric): TASK=cifar10_resnet20
	$(RPY) -m scripts.sweep every --task $(or $(TASK),cifar10_resnet20) $(_SWEEP_OPTS)

compare: ## the paper's optimizer comparison runs of TABLE=2|3|4|fig6, then its table: SEEDS SCALE LAUNCHER
	$(RPY) -m scripts.sweep compare --table $(or $(TABLE),2) $(_SWEEP_OPTS)

speed: ## Table 8 on this device: step time vs SGD/Adam for N=1..5, memory, metric: TASK=cifar10_resnet20 SCALE
	$(RPY) -m scripts.speed --task $(or $(TASK),cifar10_resnet20) --scale $(_SCALE) --results-dir $(RESULTS) \
	  $(if $(DATA),--data-source $(DATA)) $(if $(EXTRA),-- $(EXTRA))

notebooks: ## execute notebooks/*.py against RESULTS=results (executed copies in results/notebooks)
	$(RPY) -m scripts.notebooks --results-dir $(RESULTS)

# -- demo: every table and figure at smoke scale (synthetic data, a few steps, 2 seeds) on CPU -------------------
DEMO_DIR ?= results/demo
DEMO_SEEDS ?= 0,1
DEMO_TASK ?= cifar10_resnet20
DEMO_TRANSLATION ?= iwslt14
DEMO_LAUNCHER ?= basic
DEMO_RUN = trainer.epochs=2 trainer.limit_train_batches=2 trainer.limit_val_batches=1 trainer.checkpoint=false \
  trainer.progress=false logger.mode=disabled paths.work_dir=$(DEMO_DIR)/checkpoints
DEMO_VISION = $(DEMO_RUN) task.eval_batch_size=64
_DEMO = --seeds $(DEMO_SEEDS) --scale smoke --data-source synthetic --launcher $(DEMO_LAUNCHER) --results-dir $(DEMO_DIR)

demo: ## smoke-scale version of every table and figure (CPU, synthetic data, 2 seeds) in DEMO_DIR=results/demo
	@rc=0; run() { echo "+ $$*"; "$$@" || { rc=1; echo "demo: step failed (going on): $$*" >&2; }; }; \
	run $(RPY) -m scripts.sweep compare --tasks cifar10_resnet20,cifar10_resnet32 $(_DEMO) -- $(DEMO_VISION); \
	run $(RPY) -m scripts.sweep compare --tasks imagenet_resnet18 $(_DEMO) -- $(DEMO_VISION) data.synthetic.image_size=64; \
	$(if $(DEMO_TRANSLATION),run $(RPY) -m scripts.sweep compare --tasks $(DEMO_TRANSLATION) $(_DEMO) -- $(DEMO_RUN);) \
	run $(RPY) -m scripts.sweep compare --table 4 $(_DEMO) -- $(DEMO_RUN); \
	run $(RPY) -m scripts.sweep compare --table fig6 $(_DEMO) -- $(DEMO_RUN); \
	run $(RPY) -m scripts.sweep lr --task $(DEMO_TASK) $(_DEMO) -- $(DEMO_VISION); \
	run $(RPY) -m scripts.sweep block --task $(DEMO_TASK) $(_DEMO) -- $(DEMO_VISION); \
	run $(RPY) -m scripts.sweep every --task $(DEMO_TASK) $(_DEMO) -- $(DEMO_VISION); \
	run $(RPY) -m scripts.speed --task $(DEMO_TASK) --scale smoke --steps 5 --warmup 2 --repeats 2 --results-dir $(DEMO_DIR); \
	run $(RPY) -m scripts.tables --results-dir $(DEMO_DIR); \
	run $(RPY) -m scripts.notebooks --results-dir $(DEMO_DIR); \
	echo "demo: tables in $(DEMO_DIR)/tables, figures in $(DEMO_DIR)/figures (all SMOKE SCALE)"; \
	if [ $$rc -ne 0 ]; then echo "demo: some steps failed or left planned runs without a record (see above)" >&2; fi; \
	exit $$rc

demo-clean: ## delete DEMO_DIR=results/demo (the demo's runs, tables and figures)
	rm -rf $(DEMO_DIR)
