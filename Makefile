# Set-up and everyday commands. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# albumentations checks PyPI for updates on import; wandb must never wait for a network.
export NO_ALBUMENTATIONS_UPDATE := 1
export JSONARGPARSE_DEPRECATION_WARNINGS := off

.PHONY: install demo table1-demo test lint clean

install: $(VENV)/.installed

# torch==2.13.0 first and by itself: with it installed, `pip install -e .` keeps it (a fresh resolve of
# `torch>=2.6` would pull a multi-GB CUDA build). constraints.txt pins the known-good set. The `sweeps` wheel is only
# downloaded: it holds wandb's published sweep schema, which the tests check amlit's validator against (the package
# itself pins numpy<2, so it is not installed).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,onnx]"
	$(BIN)/python -m pip download --quiet --no-deps -c constraints.txt sweeps -d $(VENV)/wheels
	$(BIN)/python -c "import torch, lightning; print('torch', torch.__version__, '| lightning', lightning.__version__)"
	touch $@

demo: install
	$(BIN)/amlit fit --config configs/demo.yaml
	$(BIN)/amlit test --config configs/demo.yaml --ckpt_path runs/demo/checkpoints/last.ckpt

# Table 1 of the paper at demo scale (sweeps/table1_demo.yaml: every row, 300 steps each), then the report.
# One torch thread per trial: on the shared 2-core machine this was ~3x faster than two (override OMP_NUM_THREADS).
# The report also runs when a trial failed (it lists that row as failed); then make exits with the sweep's status.
table1-demo: install
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/amlit sweep --file=sweeps/table1_demo.yaml --output=runs/table1_demo; \
	status=$$?; $(BIN)/amlit report --runs=[runs/table1_demo] --output=runs/table1_demo/report && exit $$status

test: install
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) runs data/synthetic .pytest_cache .ruff_cache
