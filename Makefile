# Two set-up commands: `make demo` and `make test`. Each creates .venv if missing.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): setup.py
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VPY) -m framegan.demo

test: $(STAMP)
	$(VPY) -m pytest -q tests

lint: $(STAMP)
	$(VPY) -m ruff check framegan tools tests benchmarks

bench: $(STAMP)
	$(VPY) benchmarks/extract_speed.py
	$(VPY) benchmarks/train_speed.py
	$(VPY) benchmarks/compile_speed.py
	$(VPY) benchmarks/rollout_speed.py
	$(VPY) benchmarks/play_speed.py

clean:
	rm -rf runs data/sample .pytest_cache
