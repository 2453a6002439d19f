# The two commands of the README. Each sets up .venv (Python 3.11, pinned installs) on its own.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

# The main job: a small local run on the embedded defaults (local store, process pool, CPU):
# a zoo of 1000 verified programs, a tiny meta-model trained on it, its evaluation report.
# Rerunning reuses finished shards, checkpoints and reports.
run: $(STAMP)
	$(BIN)/inverse-tracr run --preset demo

# Every test, as CI runs it (.ci/run calls this): one pytest-xdist worker per core of the 2-core CI
# machine (TEST_WORKERS=0 runs them in this process); tests/conftest.py puts the tests sharing a
# trained model on one worker, so it is trained once.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

bench: $(STAMP)
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/distill.py
	@echo "meta-model on CPU: see benchmarks/meta_cpu.py (needs a 20,000-program zoo first)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) zoo-store
