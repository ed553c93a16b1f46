# twilio-studio-exporter: every target a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help venv generate check-generated dashboards check-dashboards lint format typecheck \
        test check run simulate bench reliability replicas clean prometheusrule check-deploy check-image \
        lock-image lint-workflows spec-check

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create .venv and install the project with its dev extras

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

generate: $(STAMP) ## Regenerate generated/ from openapi/ (pinned openapi-python-client and ruff)
	bash scripts/generate.sh

check-generated: $(STAMP) ## Fail (with the diff) if generated/ differs from what openapi/ generates
	bash scripts/check-generated.sh

dashboards: $(STAMP) ## Rebuild the committed Grafana dashboard JSON from grafana/dashboards.py
	$(BIN)/python grafana/dashboards.py --out grafana/dashboards

check-dashboards: $(STAMP) ## Fail if grafana/dashboards/*.json drifted from the code
	$(BIN)/python grafana/dashboards.py --check grafana/dashboards

prometheusrule: $(STAMP) ## Regenerate deploy/kubernetes/monitoring/prometheusrule.yaml from grafana/alerts
	$(BIN)/python scripts/prometheusrule.py

check-deploy: $(STAMP) ## Validate every file in deploy/ (hadolint, kubernetes-validate, promtool, ...)
	BIN=$(BIN) bash scripts/check-deploy.sh

check-image: ## Install what deploy/Dockerfile installs into a fresh venv and run its entry point
	PYTHON=$(PYTHON) bash scripts/check-image.sh

lock-image: ## Re-pin the image's dependencies (deploy/requirements.txt) from pyproject.toml
	PYTHON=$(PYTHON) bash scripts/lock-image-deps.sh

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check exporter tests bench grafana scripts
	$(BIN)/ruff format --check exporter tests bench grafana scripts

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix exporter tests bench grafana scripts
	$(BIN)/ruff format exporter tests bench grafana scripts

typecheck: $(STAMP) ## mypy --strict on exporter/ and tests/
	$(BIN)/mypy

lint-workflows: $(STAMP) ## actionlint on .github/workflows (the scheduled spec-drift check)
	$(BIN)/actionlint .github/workflows/*.yml

# SPEC: a Twilio Studio v2 spec file; BASELINE: the one the project last agreed with (optional);
# V2010 + V2010_BASELINE: the same for the v2010 API (optional); REPORT: also write the report.
spec-check: $(STAMP) ## Check openapi/ against a downloaded Twilio spec: make spec-check SPEC=path [BASELINE=old]
	@test -n "$(SPEC)" || { echo "usage: make spec-check SPEC=twilio_studio_v2.json [BASELINE=old.json] [V2010=new.json V2010_BASELINE=old.json] [REPORT=out.md]" >&2; exit 2; }
	$(BIN)/python scripts/spec_check.py --spec "$(SPEC)" \
	  $(if $(BASELINE),--baseline "$(BASELINE)") \
	  $(if $(V2010),--v2010 "$(V2010)" --v2010-baseline "$(V2010_BASELINE)") \
	  $(if $(REPORT),--report "$(REPORT)")

test: check-generated check-dashboards check-deploy check-image lint-workflows ## Run the whole test suite (drift checks, deploy files, workflows, unit, integration)
	$(BIN)/pytest $(PYTEST_ARGS)

check: lint typecheck test ## Everything: lint, format check, type check, tests

run: $(STAMP) ## The main job on the built-in simulator: no credentials needed (Ctrl-C to stop)
	$(BIN)/studio-exporter demo

simulate: $(STAMP) ## Start the Studio simulator alone in the foreground
	$(BIN)/studio-exporter simulate --port 0

bench: $(BENCH_STAMP) ## Benchmarks: ours against a naive loop, Twilio's SDK and the floor
	$(BIN)/python -m bench

replicas: $(STAMP) ## Three replicas on PostgreSQL, two SIGKILLs and a join; writes docs/replicas.md
	STUDIO_EXPORTER_REPORT=1 $(BIN)/pytest tests/test_replicas.py -s

reliability: $(STAMP) ## The full fault matrix and hostile-client attacks; writes docs/reliability.md
	$(BIN)/pytest -m slow tests/test_reliability.py tests/test_web_hostile.py -s

clean: ## Remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
