# The two commands a new user needs: `make run` (Cinch against a local real cluster) and `make test`.
# Both install what they need first: Debian packages (apt) and the npm dependencies, Node 24 included.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
APT_PACKAGES := etcd-server openssl iptables iproute2 util-linux curl jq tcpdump
CLUSTER_DIR := $(CURDIR)/.cluster

.PHONY: help deps run test unit integration e2e typecheck lint cluster cluster-down image bench clean

help:
	@echo "make run          run the control plane against \$$KUBECONFIG, or a local real cluster it starts"
	@echo "make test         type-check, lint, unit + integration + end-to-end tests (starts its own API server)"
	@echo "make cluster      start the local API server (etcd + kube-apiserver 1.20.2) in .cluster/"
	@echo "make cluster-down stop it"
	@echo "make bench        run the benchmarks under bench/"
	@echo "make image        build the container image (needs a container engine)"

# Debian packages, only those missing (apt-get update once, only when something is missing).
.deps-apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# npm ci when node_modules is missing or older than the lock file; it brings Node 24 (devDependency `node`).
node_modules/.package-lock.json: package-lock.json package.json
	npm ci --no-audit --no-fund
	@touch $@

# `cinch proxy` runs from one bundled JavaScript file (less memory than the TypeScript sources); bin/cinch.js
# uses it only while it is newer than its sources, so a stale one is never run, and this rebuilds it.
dist/proxy.js: node_modules/.package-lock.json bin/build-dist.ts $(shell find src -name '*.ts')
	node bin/build-dist.ts

deps: .deps-apt node_modules/.package-lock.json dist/proxy.js

typecheck: deps
	tsc --noEmit -p tsconfig.json

lint: deps
	eslint .

# One node --test run so the summary counts every test; the global setup starts and always stops the API server.
# No single test may run past 10 minutes and the whole run past an hour, so a stuck await or a leaked handle fails
# the run instead of hanging it. (Not --test-force-exit: it ends a file before tests registered after an await run.)
test: deps typecheck lint
	timeout --foreground 3600 node --test --test-concurrency=1 --test-timeout=600000 --test-reporter=spec --test-global-setup=test/cluster/global-setup.ts \
	  "test/unit/**/*.test.ts" "test/integration/**/*.test.ts" "test/e2e/**/*.test.ts"

unit: deps
	node --test --test-reporter=spec "test/unit/**/*.test.ts"

integration: deps
	timeout --foreground 3600 node --test --test-concurrency=1 --test-timeout=600000 --test-reporter=spec --test-global-setup=test/cluster/global-setup.ts "test/integration/**/*.test.ts"

e2e: deps
	timeout --foreground 3600 node --test --test-concurrency=1 --test-timeout=600000 --test-reporter=spec --test-global-setup=test/cluster/global-setup.ts "test/e2e/**/*.test.ts"

cluster: deps
	node test/cluster/cli.ts up

cluster-down:
	@if [ -x node_modules/.bin/node ]; then node test/cluster/cli.ts down; fi

# The demo (on the local cluster) then the control plane until Ctrl-C; DEMO=0 (or CINCH_DEMO=0): the control plane only.
run: deps
	@CINCH_DEMO="$(or $(DEMO),$(CINCH_DEMO))" node scripts/run.ts

# The benchmarks themselves; bench/ also holds their helpers (proc.ts, proxy-sidecar.ts), which are not run alone.
BENCHES := bench/ca-signer.ts bench/ca-server.ts bench/webhook.ts bench/proxy.ts

bench: deps
	@for b in $(BENCHES); do echo "== $$b"; node $$b || exit 1; done

image:
	@if ! docker info >/dev/null 2>&1; then echo "make image: no container engine is running here (docker info failed); build the image where one is: docker build -t cinch ." >&2; exit 1; fi
	docker build -t cinch .

clean: cluster-down
	rm -rf $(CLUSTER_DIR) dist
