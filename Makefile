# Two entry points for a fresh clone:
#   make demo   set everything up and start the demo on the embedded SQLite store
#   make test   set everything up and run ruff, mypy --strict and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: demo test lint docs docs-build docs-reference bench bench-instructions bench-http reliability reliability-short fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo needs only the demo extra (a few MB); `make test` installs the whole toolchain.
$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

demo: $(if $(wildcard $(STAMP)),$(STAMP),$(DEMO_STAMP))
	$(BIN)/satchel demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples reliability fuzz docs_tools
	$(BIN)/ruff format --check src tests benchmarks examples reliability fuzz docs_tools
	$(BIN)/mypy

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The documentation site (mkdocs.yml, from docs/): `make docs` serves it on
# http://127.0.0.1:8000 and rebuilds on every edit; `make docs-build` builds it into site/ in
# strict mode (a broken link, anchor or API reference fails), as tests/test_docs_site.py does.
# Both first regenerate the option table of docs/configuration.md (docs-reference).
docs: docs-reference
	$(BIN)/mkdocs serve $(ARGS)

docs-build: docs-reference
	$(BIN)/mkdocs build --strict $(ARGS)

docs-reference: $(STAMP)  # the option table of docs/configuration.md, from satchel.option_schema
	$(BIN)/python -c 'from satchel.option_docs import write_reference_table as w; w()'

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_asgi.py

# The tables of issue 12 (docs/performance.md, "Measuring"): client instructions under
# callgrind, Redis CPU and commands, Redis bytes per session, wall clock; a few minutes.
# Needs valgrind (Debian: apt-get install valgrind) and the local Redis on 127.0.0.1:6379.
bench-instructions: $(STAMP)
	@command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind"; exit 1; }
	$(BIN)/python benchmarks/bench_table.py $(ARGS)

# Issue 12 over real HTTP (docs/performance.md): requests per second, latency p50/p99 and the
# server's CPU per request of every app under uvicorn (ASGI) or gunicorn (WSGI), one worker on
# 127.0.0.1, driven by wrk; 3 interleaved rounds, about 12 minutes (ARGS="--only satchel
# --only starsessions --only floor --duration 10" and so on; see --help). Needs wrk (Debian:
# apt-get install wrk) and the local Redis on 127.0.0.1:6379.
bench-http: $(STAMP)
	@command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
	$(BIN)/python benchmarks/bench_http.py $(ARGS)

# Issue 14 (docs/reliability.md): every scenario against real servers on 127.0.0.1 (uvicorn
# and gunicorn, 2 workers), one table; exits 1 on a lost acknowledged write, a forbidden
# response or a crash. Full: 100 clients x 60 s per load run, about 20 minutes; short (CI):
# 20 clients x 5 s, a few minutes. Needs the local Redis, PostgreSQL and MariaDB, and
# memcached installed (a private one is started). ARGS="--only crash" and so on.
reliability: $(STAMP)
	$(BIN)/python -m reliability $(ARGS)

reliability-short: $(STAMP)
	$(BIN)/python -m reliability --short $(ARGS)

# The long fuzz run of docs/reliability.md: every target of fuzz/targets.py for SECONDS each
# (default 600), JOBS at a time; crashes land in fuzz/crashes/. TARGETS="cookie_store ..." picks.
SECONDS ?= 600
JOBS ?= 1
fuzz: $(STAMP)
	$(BIN)/python fuzz/run.py --seconds $(SECONDS) --jobs $(JOBS) $(TARGETS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site
