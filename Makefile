# make run   - serve the committed demo model (installs first if needed)
# make test  - run the whole test suite (installs first if needed)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 50051
METRICS_PORT ?= 9090
HTTP_PORT ?= 8080

TOOLS  := .tools
PROMTOOL := $(TOOLS)/usr/bin/promtool
BROWSER := $(TOOLS)/.browser
CHECKOV := $(TOOLS)/checkov/bin/checkov

.PHONY: install run test bench clean protos

install: $(STAMP) $(PROMTOOL) $(BROWSER) $(CHECKOV)

# checkov (policy scanner for deploy/k8s) in its own environment: its many pins stay out of ours.
$(CHECKOV):
	python3 -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install -q --disable-pip-version-check checkov

# Debian's chromium and chromedriver for the page tests (tests/test_page.py skips, saying why,
# where they cannot be installed: apt-get needs root).
$(BROWSER):
	mkdir -p $(TOOLS)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -q chromium chromium-driver >/dev/null)) || \
	  echo "note: chromium could not be installed; the browser tests will be skipped"; \
	else echo "note: chromium and chromium-driver are missing (apt-get install chromium chromium-driver, as root); the browser tests will be skipped"; fi
	touch $@

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
	$(PY) -m service --bundle models/demo-de-en --port $(PORT) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT)

bench: install
	$(PY) bench/serve_bench.py

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info
