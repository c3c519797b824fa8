# `make demo` and `make test` bootstrap .venv themselves; a second run installs nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-main
PYTEST_ARGS ?=
TORCH := torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo lab test lint notebooks fix-copies bench venv java kind-up kind-test kind-down clean

# `make demo CASE=income_census`: one case study (default: every one, mnist first); `V=1` shows
# every line the steps print (default: progress and a summary, the rest in the run's logs/).
CASE ?=
demo: $(STAMP) java
	$(PY) -m tests.harness demo $(CASE) $(if $(V),-v)

# JupyterLab on 127.0.0.1:$(LAB_PORT), opened on mnist's walkthrough. It goes into $(VENV) the first
# time (not in requirements/main.txt: only people who open the notebooks need it). Its kernels
# send what native libraries write straight to stderr (TensorFlow's C++ start-up notices) to this
# terminal instead of into the cells, as the notebook tests do (tests/harness/notebooks.py). As
# root (a container, CI), Jupyter wants --allow-root: it gets it.
JUPYTERLAB := jupyterlab==4.6.6
LAB_PORT ?= 8888
lab: $(STAMP)
	@$(PY) -c 'import jupyterlab' 2>/dev/null || { \
	  echo "installing $(JUPYTERLAB) into $(VENV) (once)"; $(PY) -m pip install --quiet $(JUPYTERLAB); }
	@mkdir -p $(VENV)/etc/ipython
	@echo 'c.IPKernelApp.capture_fd_output = False  # written by make lab' \
	  > $(VENV)/etc/ipython/ipython_kernel_config.py
	@token=$$($(PY) -c 'import secrets; print(secrets.token_hex(24))'); \
	echo "JupyterLab: http://127.0.0.1:$(LAB_PORT)/lab/tree/mnist/notebooks/walkthrough.ipynb?token=$$token"; \
	echo "start with mnist/notebooks/walkthrough.ipynb, then each case's kubeflow.ipynb; Ctrl-C stops it"; \
	JUPYTER_TOKEN=$$token $(PY) -m jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
	  --ServerApp.port_retries=0 --ServerApp.root_dir=$(CURDIR) \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) mnist/notebooks/walkthrough.ipynb

test: $(STAMP) java
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@files=$$(git ls-files --cached --others --exclude-standard '*Dockerfile'); \
	if [ -z "$$files" ]; then echo "hadolint: no Dockerfile yet"; \
	else echo "hadolint $$files"; $(VENV)/bin/hadolint $$files; fi
	@scripts=$$(git ls-files --cached --others --exclude-standard '*.sh'); \
	echo "shellcheck $$scripts"; $(VENV)/bin/shellcheck -x $$scripts

notebooks: $(STAMP)
	$(PY) -m tests.harness notebooks

# Rewrite every `# Copied from mnist...` copy from its source (tests/harness/copies.py).
fix-copies: $(STAMP)
	$(PY) -m tests.harness.copies --fix

bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH)

venv: $(STAMP)

# torch goes in first and on its own, as the CPU build: on Linux, PyPI's torch is the CUDA build with
# gigabytes of NVIDIA libraries, and so is a torch pulled in by another package. PyTorch's CPU index
# (TORCH_INDEX, as in mnist/Dockerfile) has it; where that index is out of reach (a machine with only
# a package registry or mirror), one quick try (5 s timeout, no retries) gives way to the configured
# index, which takes a CPU wheel where one is provided (as a local wheel folder does).
$(STAMP): requirements/main.txt
	@v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	if [ "$$v" != 3.11 ]; then \
	  echo "Python 3.11 is needed, $(PYTHON) is $${v:-not found}: install Python 3.11 (apt install python3.11-venv, brew install python@3.11 or pyenv install 3.11) and run make PYTHON=python3.11 $(or $(MAKECMDGOALS),demo)" >&2; \
	  exit 1; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) --timeout 5 --retries 0 $(TORCH) \
	  || { echo "$(TORCH_INDEX) is out of reach: $(TORCH) from the configured index" >&2; \
	       $(PY) -m pip install --quiet $(TORCH); }
	$(PY) -m pip install --quiet -r requirements/main.txt
	$(PY) -m pip check
	touch $@

# PySpark needs a Java runtime; install a headless one where there is none and we may (root on
# Debian/Ubuntu, as in CI), otherwise say what to install.
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing a headless Java runtime for PySpark"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null; \
	  else echo "PySpark needs Java 17 or newer: install a JRE (e.g. openjdk-17-jre-headless)"; exit 1; fi; }

# The cluster lane (needs Docker, kind and kubectl; see tests/kind/README.md).
kind-up:
	bash tests/kind/up.sh

kind-test: $(STAMP)
	$(PY) -m pytest --kind -m kind $(PYTEST_ARGS)

kind-down:
	bash tests/kind/down.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
