# Translation (IWSLT14 De-En, WMT14 En-De) through fairseq with the AdaHessian plugin: docs/translation.md.
# Included by the Makefile (`-include mk/*.mk`). Table 3's runs: `make compare TABLE=3` (or run.py, see the doc).

.PHONY: data-iwslt data-wmt smoke-translation test-translation

data-iwslt: ## download + prepare IWSLT14 De-En as fairseq does into $ADAHESSIAN_DATA/iwslt14 (internet, ~15 min CPU)
	bash scripts/prepare_iwslt14.sh

data-wmt: ## download + prepare WMT14 En-De as fairseq does into $ADAHESSIAN_DATA/wmt14_en_de (internet, hours of CPU)
	bash scripts/prepare_wmt14.sh

smoke-translation: ## a tiny IWSLT14-shaped AdaHessian run through fairseq on synthetic data (CPU, about a minute)
	$(PYTHON) run.py task=iwslt14 optim=adahessian trainer=smoke data.source=synthetic

test-translation: ## the translation tests only (CPU, a few minutes)
	$(PYTHON) -m pytest -q tests/translation
