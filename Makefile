# kumo: `make up` sets up and starts the platform; `make test` sets up and runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := var/stamps
# Debian packages kumo needs on a node: the container runtime, and what the offline
# base-image bootstrap builds images from.
APT_PACKAGES := podman runc conmon catatonit netavark aardvark-dns uidmap slirp4netns \
	fuse-overlayfs iptables busybox-static mmdebstrap python3-venv ca-certificates

.PHONY: help setup system python images up test lint typecheck imports unit integration e2e bench clean

help:
	@echo "make up    - install what kumo needs and start it (kumo up)"
	@echo "make test  - install what kumo needs and run every check (ruff, mypy, import-linter, pytest)"

setup: system python

system: $(STAMPS)/system
$(STAMPS)/system: Makefile
	@mkdir -p $(STAMPS)
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

python: $(STAMPS)/python
$(STAMPS)/python: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# Base images built locally (busybox, Debian + python3): no registry is needed.
images: setup
	$(BIN)/kumo images bootstrap

up: setup images
	$(BIN)/kumo up

lint: python
	$(BIN)/ruff check kumo tests bench
	$(BIN)/ruff format --check kumo tests bench

typecheck: python
	$(BIN)/mypy kumo

imports: python
	$(BIN)/lint-imports

test: setup images lint typecheck imports
	$(BIN)/pytest -q

unit: python
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -q tests/integration

# wrk drives the gateway benchmark (a built-in asyncio load generator is the fallback);
# nginx and haproxy are its reference proxies. A policy-rc.d answering 101 keeps their
# packages from starting system services while they install.
bench: setup images
	@missing=""; command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		guard=""; [ -e /usr/sbin/policy-rc.d ] || guard=/usr/sbin/policy-rc.d; \
		[ -z "$$guard" ] || printf '#!/bin/sh\nexit 101\n' | $$SUDO install -m 755 /dev/stdin $$guard; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
		status=$$?; [ -z "$$guard" ] || $$SUDO rm -f $$guard; exit $$status; \
	fi
	$(BIN)/python bench/api.py
	$(BIN)/python bench/pod_start.py
	$(BIN)/python bench/scheduler.py
	$(BIN)/python bench/gateway.py

clean:
	rm -rf $(VENV) var *.egg-info
