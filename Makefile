# Gatehouse: `make demo` runs the whole portal on this machine; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-doctor test check lint typecheck migrations-check pytest venv clean oidc-provider deploy-lint

# The independent OpenID Provider the sign-in tests start (tests/oidc: oidc-provider from npm, pinned by its
# package-lock.json). Without npm the sign-in tests skip (and fail under GATEHOUSE_REQUIRE_SERVICES=1).
OIDC_DIR := tests/oidc
OIDC_STAMP := $(OIDC_DIR)/node_modules/.installed

# Reinstall only when a requirements file changed. pip 26's --build-constraint keeps XStatic's sdist
# buildable (it still needs setuptools' pkg_resources).
$(STAMP): requirements.txt requirements-dev.txt build-constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("gatehouse: Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=26.0"
	$(PY) -m pip install --quiet --build-constraint build-constraints.txt -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

$(OIDC_STAMP): $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(OIDC_DIR) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "gatehouse: npm not found; the OpenID Connect sign-in tests will skip"; fi

oidc-provider: $(OIDC_STAMP)

# The deployment templates' tools (cfn-lint, checkov, the AWS CLI that docs/deploy.md uses) live in their own
# virtualenv so their dependencies never move the application's pins.
DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
CFN_TEMPLATES := $(wildcard deploy/cloudformation/*.yaml)

$(DEPLOY_STAMP): requirements-deploy.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --upgrade "pip>=26.0"
	$(DEPLOY_VENV)/bin/python -m pip install --quiet -r requirements-deploy.txt
	touch $(DEPLOY_STAMP)

# Suppressions live next to what they suppress (Metadata.checkov.skip with a comment), never here.
deploy-lint: $(DEPLOY_STAMP)
	$(DEPLOY_VENV)/bin/cfn-lint $(CFN_TEMPLATES)
	$(DEPLOY_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -d deploy/cloudformation

demo: $(STAMP)
	DEBUG=$${DEBUG:-1} $(PY) manage.py demo

# manage.py doctor against the running demo, with the settings make demo writes to var/demo.env while it runs.
demo-doctor: $(STAMP)
	@env_file=$${GATEHOUSE_VAR_DIR:-var}/demo.env; \
	test -f "$$env_file" || { echo "gatehouse: no demo is running here ($$env_file is written by make demo)"; exit 2; }; \
	set -a && . "$$env_file" && set +a && $(PY) manage.py doctor $(DOCTOR_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	DEBUG=$${DEBUG:-1} $(VENV)/bin/mypy portal accessrequests

migrations-check: $(STAMP)
	DEBUG=$${DEBUG:-1} $(PY) manage.py makemigrations --check --dry-run

pytest: $(STAMP) $(OIDC_STAMP) $(DEPLOY_STAMP)
	@DEBUG=$${DEBUG:-1} DJANGO_SETTINGS_MODULE=portal.settings $(PY) -c 'from django.conf import settings; import django, os; django.setup(); \
	  from django.db import connection as c; from portal.celery import app; \
	  print("gatehouse tests: database", c.vendor, c.settings_dict["HOST"] or c.settings_dict["NAME"], "| broker", app.connection_for_write().as_uri())'
	DEBUG=$${DEBUG:-1} $(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck migrations-check deploy-lint pytest

check: test

clean:
	rm -rf var/broker var/results var/test.sqlite3 var/artifacts $(OIDC_DIR)/node_modules $(DEPLOY_VENV)
