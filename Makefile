# aorm: `make test` runs every check; `make demo` serves the example app;
# `make conformance` runs Django's own test suite on aorm's backend (conformance/run.py).
#
# Two virtual environments: .venv (the machine's python3, Django 5.2 LTS) and
# .venv-next (Python 3.12+ where one exists, the newest Django 6.x).

PYTHON ?= python3
NEXT_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12 \
	$(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.12 python3.13 2>/dev/null))

VENV := .venv
VENV_NEXT := .venv-next
EXTRAS := postgresql,test,lint

.PHONY: test checks lint pytest demo demo-reset clean conformance bench bench-smoke wheel-check browser \
	docs mysql-client mysql-tz pgbouncer soak

DJANGO_LTS := Django>=5.2,<5.3
DJANGO_NEXT := Django>=6.0,<6.2

# $(call venv,PYTHON,DJANGO): the virtualenv of the target's directory.
define venv
	$(1) -m venv $(@D)
	$(@D)/bin/pip install -q --upgrade pip
	$(@D)/bin/pip install -q -e ".[$(EXTRAS)]" "$(2)"
	$(@D)/bin/pip install -q -e ".[mysql]" "$(2)" || echo "$(MYSQL_FAILED)"
	touch $@
endef

$(VENV)/.installed: pyproject.toml | mysql-client
	$(call venv,$(PYTHON),$(DJANGO_LTS))

$(VENV_NEXT)/.installed: pyproject.toml | mysql-client
	$(call venv,$(NEXT_PYTHON),$(DJANGO_NEXT))

# MySQL/MariaDB: Django's sync side needs mysqlclient, which pip builds from
# source against the client library's headers (Debian: libmariadb-dev and
# pkg-config), installed here where apt-get works. Without them the `mysql`
# extra does not install and MySQL is skipped, with a line saying why.
MYSQL_FAILED := mysql: pip install -e '.[mysql]' failed (mysqlclient needs the MySQL/MariaDB client headers: libmariadb-dev and pkg-config); MySQL will not be tested
mysql-client:
	@if ! pkg-config --exists libmariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing libmariadb-dev and pkg-config (apt-get) for mysqlclient"; \
			(apt-get update -q && apt-get install -y -q libmariadb-dev pkg-config) >/dev/null 2>&1 \
				|| echo "mysql: apt-get install libmariadb-dev pkg-config failed; MySQL will not be tested"; \
		else \
			echo "mysql: no MySQL/MariaDB client headers and no apt-get as root: install libmariadb-dev (or libmysqlclient-dev) and pkg-config to test MySQL"; \
		fi; \
	fi

# Django's time zone tables in a local MariaDB/MySQL server (CONVERT_TZ, which
# Django's date lookups use with USE_TZ), loaded once where they are empty.
mysql-tz:
	@if command -v mariadb-tzinfo-to-sql >/dev/null 2>&1 && mysqladmin -uroot ping >/dev/null 2>&1 \
		&& [ "$$(mariadb -uroot -N -e 'SELECT COUNT(*) FROM mysql.time_zone_name')" = 0 ]; then \
		echo "mysql: loading the server's time zone tables (mariadb-tzinfo-to-sql)"; \
		mariadb-tzinfo-to-sql /usr/share/zoneinfo 2>/dev/null | mariadb -uroot mysql \
			|| echo "mysql: loading the time zone tables failed"; \
	fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests examples conformance bench support
	$(VENV)/bin/ruff format --check src tests examples conformance bench support
	$(VENV)/bin/mypy src

# `make test`: every check CI runs, and how long it took.
test:
	@start=$$(date +%s); status=0; \
	$(MAKE) --no-print-directory checks || status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s in all, exit status $$status"; \
	exit $$status

checks: lint $(VENV)/.installed bench-smoke wheel-check browser docs mysql-tz pgbouncer
	@$(VENV)/bin/python -m tests.runner $(VENV)
	@if [ -n "$(NEXT_PYTHON)" ]; then \
		$(MAKE) --no-print-directory $(VENV_NEXT)/.installed && \
		$(VENV_NEXT)/bin/python -m tests.runner $(VENV_NEXT); \
	else \
		echo "django 6.x: no Python 3.12+ interpreter found, not tested"; \
	fi

# Debian's pgbouncer for tests/test_pgbouncer.py (started by the test on a free
# loopback port, in transaction pooling mode), installed where apt-get works.
# Where it cannot be, build/pgbouncer-unavailable says why and the test is
# skipped, under CI too; otherwise a missing pgbouncer fails a CI run.
PGBOUNCER_UNAVAILABLE := build/pgbouncer-unavailable
pgbouncer:
	@rm -f $(PGBOUNCER_UNAVAILABLE)
	@if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then \
		mkdir -p build; \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing pgbouncer (apt-get) for the PgBouncer tests"; \
			(apt-get update -q && apt-get install -y -q pgbouncer) >/dev/null 2>&1 \
				|| { echo "pgbouncer: apt-get install pgbouncer failed; the PgBouncer tests will be skipped"; \
					echo "apt-get install pgbouncer failed" > $(PGBOUNCER_UNAVAILABLE); }; \
		else \
			echo "pgbouncer: not installed, no apt-get as root; the PgBouncer tests will be skipped"; \
			echo "no apt-get as root to install it" > $(PGBOUNCER_UNAVAILABLE); \
		fi; \
	fi

# Debian's chromium and chromedriver for the demo page's browser test
# (tests/test_example_app.py), installed where apt-get works; elsewhere that
# test is skipped with a line saying why.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing chromium and chromium-driver (apt-get) for the browser test"; \
			(apt-get update -q && apt-get install -y -q chromium chromium-driver) >/dev/null 2>&1 \
				|| echo "chromium: apt-get install failed; the browser test will be skipped"; \
		else \
			echo "chromium: not installed, no apt-get as root; the browser test will be skipped"; \
		fi; \
	fi

# The documentation site (mkdocs.yml, docs/): MkDocs with the Material theme,
# the API reference from docstrings (mkdocstrings), the benchmark's latest
# report and chart; built into build/site, warnings as errors.
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	@mkdir -p docs/assets
	@cp bench/results/results.png docs/assets/bench-results.png
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
	@echo "docs: build/site/index.html"

# What `pip install` of a built wheel gives a user: sdist and wheel built,
# the wheel installed into a fresh venv, the seeds' views run there; then the
# same from a Git URL (tests/wheel_check.py).
wheel-check: $(VENV)/.installed
	$(VENV)/bin/python -m tests.wheel_check

# Django's own tests, per database (PostgreSQL, SQLite in memory, MariaDB) on
# Django's backend and on aorm's: fails if a test passing on the first does not
# pass on the second. Both Django versions run even when the first one fails;
# CONFORMANCE_NEXT=no runs the LTS only (what CI runs: .ci/run).
CONFORMANCE_NEXT ?= yes
conformance: $(VENV)/.installed mysql-tz
	@status=0; \
	$(VENV)/bin/python -m conformance.run || status=1; \
	if [ "$(CONFORMANCE_NEXT)" != yes ]; then \
		echo "django 6.x: not run (CONFORMANCE_NEXT=$(CONFORMANCE_NEXT))"; \
	elif [ -n "$(NEXT_PYTHON)" ]; then \
		$(MAKE) --no-print-directory $(VENV_NEXT)/.installed && \
		$(VENV_NEXT)/bin/python -m conformance.run || status=1; \
	else \
		echo "django 6.x: no Python 3.12+ interpreter found, not tested"; \
	fi; \
	exit $$status

# The example app (examples/school) under uvicorn on http://127.0.0.1:$(PORT).
# PORT (default 8000); DEBUG=1 (default: a 500 carries its traceback) or 0;
# DATABASE_URL (default sqlite:///examples/school/school.sqlite3, or
# postgres://user@host:port/name: created when missing, if the user may).
# Repeatable: migrations and sample students are applied once.
# `make demo-reset` removes the demo's database (the SQLite file, or drops the
# PostgreSQL database DATABASE_URL names).
PORT ?= 8000
DEMO := cd examples/school && ../../$(VENV)/bin/python

demo: $(VENV)/.installed
	@$(DEMO) manage.py demo_database --create
	@$(DEMO) manage.py migrate --noinput -v 0
	@$(DEMO) manage.py load_students
	@echo ""
	@echo "aorm demo: the seeds' async views on http://127.0.0.1:$(PORT)/ (Ctrl-C stops)"
	@echo "  Open http://127.0.0.1:$(PORT)/ in a browser: every endpoint, with a form to try it."
	@echo "  Or with curl (every answer is JSON, errors too):"
	@echo "  curl http://127.0.0.1:$(PORT)/students/"
	@echo "  curl http://127.0.0.1:$(PORT)/example/"
	@echo "  curl http://127.0.0.1:$(PORT)/students/1/"
	@echo "  curl -X POST -d '{\"name\": \"Asha\", \"age\": 19}' http://127.0.0.1:$(PORT)/students/create/"
	@echo "  curl -X PATCH -d '{\"age\": 23}' http://127.0.0.1:$(PORT)/students/1/"
	@echo "  curl -X DELETE http://127.0.0.1:$(PORT)/students/1/"
	@echo "  curl -X POST -d '[{\"name\": \"A\", \"age\": 1}, {\"name\": \"B\", \"age\": 2}]' http://127.0.0.1:$(PORT)/students/enrol/"
	@echo "  curl http://127.0.0.1:$(PORT)/api/courses/          (django-ninja: courses with their students)"
	@echo "  curl -X POST -d '{\"student\": 5}' http://127.0.0.1:$(PORT)/api/courses/2/students/"
	@echo ""
	@echo "  /example/ is the seeds' example_view, verbatim: it creates \"Ravi\" and then"
	@echo "  aget(name=\"Ravi\"), so from its second call there are two Ravis and it answers"
	@echo "  500 MultipleObjectsReturned, exactly as in stock Django. make demo-reset starts over."
	@echo "  Settings: PORT=$(PORT), DEBUG=$${DEBUG:-1} (0: no traceback in 500s), DATABASE_URL=$${DATABASE_URL:-sqlite:///examples/school/school.sqlite3}"
	@echo ""
	$(DEMO) -m uvicorn school.asgi:application --host 127.0.0.1 --port $(PORT)

demo-reset: $(VENV)/.installed
	@$(DEMO) manage.py demo_database --drop

clean:
	rm -rf $(VENV) $(VENV_NEXT) build dist src/*.egg-info
	rm -f examples/school/school.sqlite3 examples/school/school.sqlite3-wal examples/school/school.sqlite3-shm

# `make bench`: aorm against its peers on PostgreSQL and MariaDB (bench/README.md),
# in a virtual environment of its own (bench/.venv: Python 3.12+ for Django 6.x
# and django-async-backend). `make bench QUICK=1`: a smoke run of a few seconds.
# Contenders are installed one by one; one that fails is listed in
# bench/.venv/install-failures.txt and reported as failed in the results.
# MariaDB's: mysqlclient (stock Django; built against the client headers of
# `mysql-client`) and asyncmy (aorm, Tortoise, SQLAlchemy).
BENCH_PYTHON ?= $(or $(NEXT_PYTHON),$(PYTHON))
BENCH_VENV := bench/.venv
BENCH_CONTENDERS := asyncpg "django-async-backend[binary,pool]" "tortoise-orm[asyncpg,asyncmy]" \
	"sqlalchemy[asyncio]" mysqlclient asyncmy

$(BENCH_VENV)/.installed: pyproject.toml bench/requirements.txt | mysql-client
	rm -rf $(BENCH_VENV)
	$(BENCH_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q -e ".[postgresql]" -r bench/requirements.txt
	$(BENCH_VENV)/bin/pip freeze | grep -i '^django==' > $(BENCH_VENV)/constraints.txt
	@for pkg in $(BENCH_CONTENDERS); do \
		$(BENCH_VENV)/bin/pip install -q -c $(BENCH_VENV)/constraints.txt "$$pkg" \
			|| echo "$$pkg" >> $(BENCH_VENV)/install-failures.txt; \
	done
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m bench.run $(if $(QUICK),--quick)

# `make soak`: 100,000 requests against one uvicorn server of bench/soak_app.py (bench/soak.py:
# the seeds' views, transactions, asyncio.gather, client hang-ups): 20 minutes on a shared
# two-core machine (the server spends about 10 ms of CPU per request); RSS, connections,
# greenlets and asyncio tasks at the start and the end, into bench/results/soak.md.
# A long run, not part of `make test`. Needs the test PostgreSQL.
soak: $(VENV)/.installed
	$(VENV)/bin/python -m bench.soak

# The quick benchmark as a test (bench/test_smoke.py), so that it never rots:
# in the project's .venv, where aorm and stock Django (PostgreSQL, SQLite,
# MariaDB) produce numbers and the peers, not installed there, are reported as
# such. The peers' own venv (bench/.venv) is built by `make bench` only.
bench-smoke: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -c bench/pytest.ini bench
