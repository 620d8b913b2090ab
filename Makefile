# One entry point for setup, the demo, the tests and the type checks (CI runs `make test`).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test typecheck docs bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[torch,onnx,ort,openvino,cuda,dev,explain,docs,serve,ladder]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rpol-edge demo --output out/demo

typecheck: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH bash scripts/typecheck.sh
	$(VENV)/bin/mypy rpol_edge benchmarks
	$(VENV)/bin/ruff check rpol_edge tests benchmarks examples
	$(VENV)/bin/lint-imports --no-cache

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet -d $(abspath $(VENV))/site

test: $(STAMP) typecheck docs
	$(PY) -m pytest -q -rs -p no:cacheprovider

bench: demo
	$(VENV)/bin/rpol-edge bench out/demo/sample.rpol
