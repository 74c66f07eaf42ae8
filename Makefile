# lunbridge — developer entry points. `make demo` and `make test` are the README's quick start.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all bench contract-ontap demo sanity test test-unit test-integration lint proto peers venv lab-up lab-down lab-status clean

all: test

# libvirt-python builds from source: the Debian packages (libvirt-dev, pkg-config, gcc) come first.
$(VENV)/.installed: pyproject.toml
	hack/peers/install-debian.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

proto: venv
	PYTHON=$(PY) hack/gen-proto.sh

peers:
	hack/peers/all.sh

# The images the chart names (lunbridge's, the CSI sidecars', pause), built with buildah into the
# local containers storage with no image registry, and exported as uncompressed OCI archives to
# the peer cache (~/.cache/lunbridge/images). Warm: seconds. See README "Build the image".
.PHONY: image
image: venv proto peers
	hack/image/build.sh

lint: venv proto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy lunbridge operator/lunbridge_operator csi/lunbridge_csi tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile

# Installs or builds whatever the tests need, then runs every test (none may be skipped), on
# TEST_WORKERS pytest-xdist workers; tests/conftest.py says how the packages are shared out.
TEST_WORKERS ?= 2
test: venv proto peers lint image
	$(PY) -m pytest -n $(TEST_WORKERS) tests

test-unit: venv proto
	$(PY) -m pytest tests/unit

test-integration: venv proto peers image
	$(PY) -m pytest -n $(TEST_WORKERS) tests/integration

lab-up: venv proto peers $(if $(filter-out 0,$(LAB_KUBELET)),image)
	$(PY) -m tests.lab up

# csi-sanity against a lab started with `make lab-up LAB_SERVICES=1` (its .lab/env endpoints).
# The storage backend contract against a real ONTAP cluster (not part of make test): set
# ONTAP_URL (https://host[:port]), ONTAP_SVM, ONTAP_USERNAME, ONTAP_PASSWORD, and optionally
# ONTAP_CA_FILE, ONTAP_TLS_VERIFY=false, ONTAP_AGGREGATE. The SVM's iSCSI LIFs must be
# reachable from here (libiscsi's tools log in to check masking and content).
contract-ontap: venv proto
	@test -n "$(ONTAP_URL)" || { echo "contract-ontap: set ONTAP_URL, ONTAP_SVM, ONTAP_USERNAME and ONTAP_PASSWORD" >&2; exit 2; }
	$(PY) -m pytest -n 0 -p no:cacheprovider tests/integration/backends/test_contract.py -k ontap

sanity: venv proto peers
	$(PY) -m tests.lab sanity

lab-down: venv
	$(PY) -m tests.lab down

lab-status: venv
	$(PY) -m tests.lab status

demo: venv proto peers
	$(PY) -m tests.lab demo

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache

# Speed figures (printed, never asserted): apply->Ready against the direct backend calls,
# and many disks over many VMs at once against one by one. BENCH_ARGS="--disks 50 --vms 5".
bench: venv proto peers
	$(PY) -m tests.bench $(BENCH_ARGS)
