# Waybill: `make demo` and `make test` are the two set-up commands; both work on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pyenv picks 3.12 from .python-version; otherwise any python3.12 on PATH.
PYTHON312 := $(shell (command -v pyenv >/dev/null && pyenv which python3.12 2>/dev/null) || command -v python3.12 || echo python3.12)
WITH_DB := $(PY) -m config.embedded_pg run --
# The browser tests use Debian's chromium (apt-get install -y chromium); Playwright never downloads one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: demo test bench chaos soak lint format install lock db-start db-stop db-status clean mutation

$(PY):
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The exact versions come from requirements.lock (`make lock` rewrites it from pyproject.toml's ranges).
$(STAMP): pyproject.toml requirements.lock | $(PY)
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(WITH_DB) $(PY) -m config.stack

test: $(STAMP)
	WAYBILL_TESTING=1 $(WITH_DB) $(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	WAYBILL_TESTING=1 WAYBILL_BENCH=1 $(WITH_DB) $(PY) -m pytest tests/benchmarks -m benchmark -s -p no:randomly $(PYTEST_ARGS)

# Failure scenarios (tests/chaos, README "Chaos"): a worker SIGKILLed every 5 s through a 10,000-order ingest,
# the relay killed between send and mark-sent 1,000 times, the embedded PostgreSQL restarted mid-sync, the
# broker down for a minute, two beat processes. Each prints its figures. About 20-30 minutes on 2 cores.
chaos: $(STAMP)
	WAYBILL_TESTING=1 WAYBILL_CHAOS=1 WAYBILL_CHAOS_RELAY_KILLS=1000 WAYBILL_CHAOS_BROKER_DOWN_SECONDS=60 \
		$(WITH_DB) $(PY) -m pytest tests/chaos tests/config/test_beat_leader.py tests/channels/test_worker_kill.py \
		-s -p no:randomly $(PYTEST_ARGS)

# The demo under its own load for 30 minutes with a burst of 500 webhooks; prints the figures
# (tests/benchmarks/soak.py; WAYBILL_SOAK_MINUTES shortens it), in a database of its own made anew each run.
soak: $(STAMP)
	$(WITH_DB) $(PY) -m tests.benchmarks.soak

# --- mutation testing (tests/mutation/run.py): mutmut on the critical modules plus the SQL hand mutants.
# CPU-heavy: low priority; MUTATION_JOBS mutants at a time (default 2), MUTATION_ARGS e.g. --keep, --scope NAME.
mutation: $(STAMP)
	WAYBILL_TESTING=1 $(WITH_DB) nice -n 10 $(PY) -m tests.mutation.run $(MUTATION_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

lock: $(STAMP)
	$(VENV)/bin/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
		-o requirements.lock pyproject.toml

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

db-start: $(STAMP)
	$(PY) -m config.embedded_pg start

db-stop: $(STAMP)
	$(PY) -m config.embedded_pg stop

db-status: $(STAMP)
	$(PY) -m config.embedded_pg status

clean:
	-$(PY) -m config.embedded_pg stop
	rm -rf $(VENV) var
