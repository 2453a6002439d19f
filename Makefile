# The two commands of the README. Each sets up .venv (Python 3.11, pinned installs) on its own.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

# The main job: a small local run on the embedded defaults (local store, process pool, CPU).
run: $(STAMP)
	$(BIN)/inverse-tracr generate --store ./zoo-store --zoo demo --programs 200 --shard-size 50

# Every test, as CI runs it (.ci/run calls this).
test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/generate.py

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) zoo-store
