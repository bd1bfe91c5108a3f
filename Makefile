# Two entry points for a fresh machine: `make sweep` and `make test`.
# Each creates .venv when absent and reuses it otherwise.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build that lies on this workplace's disk; override e.g. TORCH_SPEC='torch==2.5.1'.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.initsweep-installed

.PHONY: setup sweep test test-fast lint tune dashboard ui bench clean

setup: $(STAMP)

# torch first, honouring one already installed: if the base Python imports torch, the venv sees it
# through --system-site-packages and nothing is reinstalled; otherwise the CPU build is installed
# before the project, so pip never resolves the bare `torch` requirement to a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
	    echo "Using the torch already installed for $(PYTHON)"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else $(PYTHON) -m venv $(VENV); fi; \
	fi
	@$(PY) -c "import torch" >/dev/null 2>&1 || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,postgres,slurm]"
	@touch $(STAMP)

sweep: setup
	$(PY) train.py -m init=zeros,ones,normal,uniform

# The whole suite, with the real services its cluster tests need (PostgreSQL, SLURM, an MLflow server on
# 127.0.0.1, started by scripts/services/*.sh as root and stopped afterwards).
# TEST_WORKERS pytest-xdist processes: 3 on 2 cores, because much of a test's time is a train.py subprocess
# waiting on another process (its writer, a server, SLURM), which a third worker overlaps
# (docs/performance.md, "Set-up, first sweep and test suite"); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 3
test: setup
	$(MAKE) services
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal; rc=$$?; $(MAKE) services-stop; exit $$rc

test-fast: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow"

# Format and lint (ruff), types (mypy) and the import graph's contracts (import-linter, see pyproject.toml).
lint: setup
	$(VENV)/bin/ruff format --check src tests scripts examples train.py
	$(VENV)/bin/ruff check src tests scripts examples train.py
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

# An Optuna study of the normal initializer's std (conf/hparams_search/normal_std.yaml); re-running resumes it.
tune: setup
	$(PY) train.py -m hparams_search=normal_std

# optuna-dashboard (the `dashboard` extra) on the default study storage.
dashboard: setup
	@$(VENV)/bin/optuna-dashboard --version >/dev/null 2>&1 || $(PY) -m pip install -q -e ".[dashboard]"
	$(VENV)/bin/optuna-dashboard mlruns/optuna/journal.log --host 127.0.0.1 --port 8080

ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf outputs multirun

# --- Scale-out (docs/scale-out.md): throwaway services on 127.0.0.1, as root, installed from Debian packages.
.PHONY: server services services-stop test-cluster
# PostgreSQL + `mlflow server` (artifacts served): tracking.uri=http://127.0.0.1:5001
server: setup
	MLFLOW_BIN=$(VENV)/bin/mlflow scripts/services/mlflow_server.sh start

services: server
	scripts/services/slurm.sh start

services-stop:
	-scripts/services/mlflow_server.sh stop
	-scripts/services/slurm.sh stop
	-scripts/services/postgres.sh stop

test-cluster: setup
	$(MAKE) services
	$(PY) -m pytest -m cluster tests/test_cluster.py; rc=$$?; $(MAKE) services-stop; exit $$rc
