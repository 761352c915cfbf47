# Recipes: docs/recipes.md from the sources: blocks of conf/ (scripts/recipes.py). Included by the Makefile.
.PHONY: recipes recipes-check

recipes: ## write docs/recipes.md: every paper-scale setting per task and optimizer with its source
	$(or $(PYTHON),python) -m scripts.recipes

recipes-check: ## fail when a recipe value has no source or docs/recipes.md is stale
	$(or $(PYTHON),python) -m scripts.recipes --check
