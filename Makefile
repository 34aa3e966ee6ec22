# Two commands set up everything: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PACT_DO_NOT_TRACK := true

.PHONY: run test lint unit integration contract bench soak venv clean pact-publish

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: both services in one process, in-memory adapters, demo catalog
run: $(STAMP)
	ADMIN_TOKEN=$${ADMIN_TOKEN:-dev-admin-token} $(BIN)/order-service serve --embedded

## test: lint, then every test tier
test: lint unit integration contract

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/pytest tests/integration -q

contract: $(STAMP)
	rm -rf pacts
	$(BIN)/pytest tests/contract -q -p no:randomly

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m bench.soak

## pact-publish: pacts/ (written by make contract) to the broker at PACT_BROKER_URL; credentials come from
## PACT_BROKER_TOKEN or PACT_BROKER_USERNAME/PACT_BROKER_PASSWORD, read by pact-broker itself
pact-publish:
	@test -n "$$PACT_BROKER_URL" || { echo "PACT_BROKER_URL is not set" >&2; exit 1; }
	@ls pacts/*.json >/dev/null 2>&1 || { echo "pacts/ holds no pact: run make contract first" >&2; exit 1; }
	npx --yes --package=@pact-foundation/pact-cli@16 pact-broker publish pacts \
		--consumer-app-version="$$(git rev-parse --short HEAD)" \
		--branch="$$(git rev-parse --abbrev-ref HEAD)" \
		--broker-base-url="$$PACT_BROKER_URL"

clean:
	rm -rf $(VENV) pacts .pytest_cache .mypy_cache .ruff_cache .hypothesis
