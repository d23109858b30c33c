# Maestro: `make up` runs it on the local cloud; `make test` runs every check.
# Both install what they need first, idempotently: a Python virtualenv, npm tools, and (for
# the tests) the Debian packages of the servers they start.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
CARGO ?= cargo
export MAESTRO_PYTHON := $(abspath $(VENV))/bin/python
# The local cloud talks to the emulator with test credentials; never reach for a real account.
export AWS_EC2_METADATA_DISABLED := true
export SAM_CLI_TELEMETRY := 0

TEMPLATE := infra/template.yaml
OTHER_TEMPLATES := infra/us-east-1-forwarder.yaml infra/member-role.yaml infra/member-events-forwarder.yaml
OPENAPI_DOCUMENTS := $(wildcard docs/openapi/*.yaml)
STATE_MACHINES := $(wildcard statemachines/*.asl.json)
VENV_STAMP := $(VENV)/.installed-$(shell cat requirements.txt constraints.txt | cksum | cut -d' ' -f1)
NODE_STAMP := node_modules/.installed-$(shell cat package.json package-lock.json | cksum | cut -d' ' -f1)

.PHONY: help up test system-packages venv node cdk-node build fmt fmt-check clippy unit-and-e2e lint-template lint-asl cdk-compare

help:
	@echo "make up     run Maestro on the local cloud (Ctrl-C stops it)"
	@echo "make test   run every check: format, clippy, unit, adapter and end-to-end tests, template and ASL linters"

up: venv
	$(CARGO) run --quiet -p maestro-localcloud -- up

test: system-packages venv node fmt-check clippy unit-and-e2e lint-template lint-asl cdk-compare
	@echo "make test: every check passed"

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements.txt constraints.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) || \
		{ echo "cannot create $(VENV); on Debian: apt-get install python3-venv" >&2; exit 1; }
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

node: $(NODE_STAMP)

# The browser test drives Debian's Chromium through playwright-core (no browser download).
export MAESTRO_CHROMIUM ?= /usr/bin/chromium

# Real servers the tests start on loopback, from Debian's packages: Chromium for the browser
# test, PostgreSQL and RabbitMQ for the rotation tests (each test starts its own server; the
# packages' own services are not used). Whatever is missing is installed: as root directly,
# otherwise through sudo when it needs no password, otherwise make stops with the command to run.
system-packages:
	@missing=(); \
	test -x "$(MAESTRO_CHROMIUM)" || missing+=(chromium); \
	compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || test -n "$${MAESTRO_PG_BINDIR:-}" || missing+=(postgresql); \
	test -x /usr/lib/rabbitmq/bin/rabbitmq-server || missing+=(rabbitmq-server); \
	[ $${#missing[@]} -gt 0 ] || exit 0; \
	install="apt-get install -y -qq --no-install-recommends $${missing[*]}"; \
	if ! command -v apt-get > /dev/null; then \
		echo "make: the tests need $${missing[*]} (Debian package names); install them with your package manager" >&2; exit 1; \
	elif [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo > /dev/null && sudo -n true 2> /dev/null; then sudo="sudo -n"; \
	else echo "make: the tests need $${missing[*]}; run once: sudo apt-get update && sudo $$install" >&2; exit 1; fi; \
	echo "make: installing $${missing[*]} from Debian's packages"; \
	$$sudo apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive $$sudo $$install > /dev/null

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

build:
	$(CARGO) build --workspace --all-targets --locked

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# One build serves every test binary; the end-to-end binary starts the emulator itself. The
# emulator logs every AWS call with its caller to CALL_LOG, and the IAM test then holds each
# function's policy to the calls it made (tests/e2e/iam.rs).
CALL_LOG := $(abspath .maestro)/aws-calls.jsonl
unit-and-e2e: venv
	@mkdir -p $(dir $(CALL_LOG)) && rm -f $(CALL_LOG)
	MAESTRO_CALL_LOG=$(CALL_LOG) $(CARGO) test --workspace --locked
	MAESTRO_CALL_LOG=$(CALL_LOG) $(CARGO) test --locked -p maestro-tests --test e2e -- --ignored iam::

lint-template: venv
	$(VENV)/bin/cfn-lint $(TEMPLATE) $(OTHER_TEMPLATES)
	AWS_DEFAULT_REGION=us-east-1 $(VENV)/bin/sam validate --lint -t $(TEMPLATE)
	$(VENV)/bin/openapi-spec-validator $(OPENAPI_DOCUMENTS)
	BC_SKIP_MAPPING=TRUE $(VENV)/bin/checkov $(foreach t,$(TEMPLATE) $(OTHER_TEMPLATES),-f $(t)) --framework cloudformation --skip-download --compact --quiet

CDK_DIR := infra/cdk
CDK_NODE_STAMP := $(CDK_DIR)/node_modules/.installed-$(shell cat $(CDK_DIR)/package.json $(CDK_DIR)/package-lock.json | cksum | cut -d' ' -f1)

cdk-node: $(CDK_NODE_STAMP)

$(CDK_NODE_STAMP): $(CDK_DIR)/package.json $(CDK_DIR)/package-lock.json
	cd $(CDK_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The CDK app (infra/cdk) must deploy what infra/template.yaml declares: it is synthesized
# offline without building the Rust functions (-c bundling=false starts no cargo), then its
# functions, queues, rules, routes and policies are compared with the SAM template's.
cdk-compare: venv cdk-node
	$(VENV)/bin/python -m unittest discover -s $(CDK_DIR)/tests
	cd $(CDK_DIR) && npx --no-install cdk synth --quiet -c bundling=false
	$(VENV)/bin/python $(CDK_DIR)/compare-with-sam.py

lint-asl: node
	@for definition in $(STATE_MACHINES); do \
		npx --no-install asl-validator --json-path "$$definition"; \
	done
