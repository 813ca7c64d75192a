# make run   - serve the committed demo model (installs first if needed)
# make test  - run the whole test suite (installs first if needed)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 50051
METRICS_PORT ?= 9090

.PHONY: install run test bench clean protos

install: $(STAMP)

# torch is pinned through constraints.txt: any other version pulls several GB of CUDA packages.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[train,dev]"
	touch $(STAMP)

run: install
	$(PY) -m training translate --checkpoint models/checkpoints/demo-de-en.pt --beam 5 < configs/samples.de

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build dist *.egg-info
