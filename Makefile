# make run   - serve the committed demo model (installs first if needed)
# make test  - run the whole test suite (installs first if needed)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 50051
METRICS_PORT ?= 9090

TOOLS  := .tools
PROMTOOL := $(TOOLS)/usr/bin/promtool

.PHONY: install run test bench clean protos

install: $(STAMP) $(PROMTOOL)

# promtool and prometheus from Debian's package, unpacked locally (no system-wide install).
$(PROMTOOL):
	mkdir -p $(TOOLS)/deb
	cd $(TOOLS)/deb && (apt-get download prometheus 2>/dev/null || (apt-get update -qq && apt-get download prometheus))
	dpkg-deb -x $(TOOLS)/deb/prometheus_*.deb $(TOOLS)
	rm -rf $(TOOLS)/deb

# torch is pinned through constraints.txt: any other version pulls several GB of CUDA packages.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[train,dev]"
	touch $(STAMP)

run: install
	$(PY) -m service --bundle models/demo-de-en --port $(PORT) --metrics-port $(METRICS_PORT)

bench: install
	$(PY) bench/serve_bench.py

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info
