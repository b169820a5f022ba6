# The README's commands. Each target builds the virtual environment it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench chaos chaos-nodes bench-redis clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,claude]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m forge.demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check forge actors events tests benchmarks
	$(BIN)/ruff format --check forge actors events tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Faults a real machine deals Forge (daemon, agents, shims and server killed; a 30 s server
# stall), with every figure printed next to its target; a few minutes.
chaos: $(STAMP)
	$(BIN)/python -m benchmarks.chaos

# What a Redis Sentinel failover loses: everysec vs always, with and without WAIT, a master
# failed over or killed (real redis-server/redis-sentinel on loopback); a few minutes.
bench-redis: $(STAMP)
	$(BIN)/python -m benchmarks.redis_failover

# Three nodes in network namespaces of their own, one Redis over TCP, 500 tasks under random
# SIGKILLs and partitions for a minute; every figure next to its target. Needs root.
chaos-nodes: $(STAMP)
	$(BIN)/python -m benchmarks.nodes_chaos

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
