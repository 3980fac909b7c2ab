# genlab: every target creates .venv with the pinned environment first (one-time, ~2 min).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8888
WORKERS ?= 2
NB     ?= labs/01_transposed_convolution/01_transposed_convolution.ipynb

.PHONY: help venv test test-fast test-browser lab instructor grade release validate build check bench doctor lock clean

help:
	@echo "make lab        open JupyterLab on work/, your copy of labs/ (students)"
	@echo "make instructor open JupyterLab on the repository with nbgrader's tools (instructors)"
	@echo "make grade      release -> autograde -> feedback -> CSV on the bundled example submissions"
	@echo "make test       create .venv with the pinned environment and run the whole test suite"
	@echo "make test-browser   the real-browser test (Chromium); screenshots in artifacts/browser/"
	@echo "make check NB=work/<id>/<id>.ipynb   self-check your notebook"
	@echo "make build / release / validate      maintainers: sources -> solutions -> labs, and checks"
	@echo "make bench      training throughput benchmark;  make doctor   environment report"

$(STAMP): pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-browser: $(STAMP)
	$(BIN)/python -m pytest tests/test_browser.py

lab: $(STAMP)
	$(BIN)/genlab lab --port=$(PORT) -- $(LAB_ARGS)

instructor: $(STAMP)
	$(BIN)/genlab lab --instructor --port=$(PORT) -- $(LAB_ARGS)

grade: $(STAMP)
	$(BIN)/genlab grade --workers $(WORKERS) $(LABS)

release: $(STAMP)
	$(BIN)/genlab release

validate: $(STAMP)
	$(BIN)/genlab validate

build: $(STAMP)
	$(BIN)/genlab build

check: $(STAMP)
	$(BIN)/genlab check $(NB)

bench: $(STAMP)
	$(BIN)/genlab bench

doctor: $(STAMP)
	$(BIN)/genlab doctor

lock: $(STAMP)
	{ echo '# Exact versions for CI and grading (pip install -c requirements-lock.txt -e ".[dev]").'; \
	  echo '# Regenerate with: make lock   (pip freeze of a working .venv).'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^genlab'; } > requirements-lock.txt.new
	mv requirements-lock.txt.new requirements-lock.txt

clean:
	rm -rf $(VENV) grading/autograded grading/feedback grading/gradebook.db grading/*.csv
