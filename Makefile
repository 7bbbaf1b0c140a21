# `make test` is the whole test suite from a fresh clone: it creates .venv itself.
# `make up STACK=dev` runs `pulumi up` on a stack (Pulumi creates .venv from requirements.txt).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STACK ?= dev
# The lab's real Neutron (tests/lab/requirements-lab.txt) on Debian's python3, as on the hosts.
LAB_PYTHON ?= /usr/bin/python3
LAB_VENV ?= .lab-venv

.PHONY: test venv lab-venv lab-rootfs lab-guest lab-db up preview lab render bench lint smoke

venv: $(VENV)/.installed $(VENV)/bin/sshpin
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	@# actionlint (tests/test_workflow.py) from the Go module proxy; needs Go >= 1.21 (it fetches go1.25+).
	if command -v go >/dev/null; then \
	  GOBIN=$(abspath $(VENV))/bin go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12; \
	else echo "warning: no Go, actionlint not installed: test_workflow skips (fails when CI=true)" >&2; fi
	touch $@

# tests/test_hostkey.py: an SSH client that pins host keys exactly as pulumi-command v1.2.1 does
# (golang.org/x/crypto/ssh, from the Go module proxy). Without Go those tests skip (fail when CI=true).
$(VENV)/bin/sshpin: tests/sshpin/main.go tests/sshpin/go.mod tests/sshpin/go.sum
	if command -v go >/dev/null; then cd tests/sshpin && go build -o $(abspath $@) .; \
	else echo "warning: no Go, sshpin not built: its host-key tests skip" >&2; fi

lab-venv: $(LAB_VENV)/.installed
$(LAB_VENV)/.installed: tests/lab/requirements-lab.txt
	$(LAB_PYTHON) -m venv $(LAB_VENV)
	$(LAB_VENV)/bin/pip install -q --disable-pip-version-check -r tests/lab/requirements-lab.txt
	$(LAB_VENV)/bin/pip check
	touch $@

# The lab host's root filesystem (tests/lab/rootfs.sh: debootstrap of a minimal Debian 12, 70-80 s
# once, cached in /var/cache/ooa-lab): built here, never inside the timed lab. Needs root and
# debootstrap; without them the lab skips (fails when CI=true).
lab-rootfs:
	if [ "$$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then tests/lab/rootfs.sh build >/dev/null; \
	else echo "warning: not root or no debootstrap: no lab host root filesystem (the lab skips)" >&2; fi

# The lab's guest disk image, a CirrOS stand-in (tests/lab/guest.sh: Debian's cloud kernel, busybox and
# glibc from apt, 6-19 s once, cached in /var/cache/ooa-lab): built here, never inside the timed
# lab. Needs root, syslinux, mtools and dosfstools; without them tests/lab/test_guest.py skips (fails
# when CI=true).
lab-guest:
	if [ "$$(id -u)" = 0 ] && command -v syslinux >/dev/null && command -v mcopy >/dev/null && command -v mkfs.fat >/dev/null; \
	then tests/lab/guest.sh build >/dev/null; \
	else echo "warning: not root or no syslinux, mtools or dosfstools: no lab guest image (its test skips)" >&2; fi

# The lab's MariaDB data folder with the services' schemas migrated once per lock file and
# MariaDB version (tests/lab/dbcache.py; /var/cache/ooa-lab, root). Without root or the packages it warns
# and builds nothing: the lab then says it cannot run (a failure when CI=true).
lab-db: venv lab-venv
	OOA_LAB_VENV=$(abspath $(LAB_VENV)) $(PY) -m tests.lab.dbcache build

test: venv lab-venv lab-rootfs lab-guest lab-db
	OOA_LAB_VENV=$(abspath $(LAB_VENV)) $(PY) -m pytest

up: venv
	pulumi up --stack $(STACK)

preview: venv
	pulumi preview --stack $(STACK) --diff

bench: venv
	$(PY) bench/bench_program.py

# The lab: the networking steps on real Open vSwitch in network namespaces (root; see docs/lab.md).
lab: venv lab-venv lab-rootfs lab-db
	OOA_LAB_VENV=$(abspath $(LAB_VENV)) $(PY) -m tests.lab.demo

# Write, without deploying, what each remote step will run on the host: make render STACK=dev OUT=render
# (or from a config file: make render CONFIG=examples/stacks/existing-machine.yaml)
OUT ?= render
CONFIG ?=
render: venv
	$(PY) tools/render.py $(if $(CONFIG),--config $(CONFIG),--stack $(STACK)) --out $(OUT)

# Check a deployed stack from this machine: Horizon, Keystone, each TCP forward (tools/smoke.py).
smoke: venv
	$(PY) tools/smoke.py --stack $(STACK)

lint: venv
	$(PY) -m pytest tests/test_static.py
