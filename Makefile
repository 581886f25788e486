# The README's two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: demo test install ui stack stack-down clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/msvqa run configs/demo.yaml

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# Prefect UI and MLflow UI over the demo's stores, on 127.0.0.1 (Ctrl-C stops both).
# The MLflow link opens the demo experiment's runs in the comparison view (`msvqa runs link`: accuracies
# as columns, best first, model-training UI), past MLflow's home page and its "collects usage data" notice.
ui: $(STAMP)
	@echo "Prefect UI http://127.0.0.1:4200  MLflow UI $$($(BIN)/msvqa runs link configs/demo.yaml \
	  --ui-url http://127.0.0.1:5000 2>/dev/null || echo 'http://127.0.0.1:5000/#/experiments?workflowType=machine_learning')"
	PREFECT_HOME=$(CURDIR)/data/demo/prefect $(BIN)/prefect server start --host 127.0.0.1 --port 4200 & \
	prefect_pid=$$!; \
	trap "kill $$prefect_pid" EXIT INT TERM; \
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(CURDIR)/data/demo/mlflow.db \
	  --default-artifact-root $(CURDIR)/data/demo/mlartifacts

clean-demo:
	rm -rf data/demo

# The local stack on 127.0.0.1: Prefect server, MLflow server, a Dask scheduler and two workers, `msvqa serve`.
stack: $(STAMP)
	scripts/stack.sh configs/demo.yaml

stack-down:
	scripts/stack_down.sh
