# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The extras `make install` installs; CI adds support and ray in the same pip run (one resolve, not two).
EXTRAS ?= dev,ui,metrics

# The shared real data sets sit beside the repository; profiles refer to them as ${data}.
ifneq ($(wildcard ../shared/data),)
export HEIRLOOM_DATA ?= $(abspath ../shared/data)
endif

.PHONY: test demo lint install bytecode clean

install: $(STAMP)

# uv installs the same pinned set as pip in a sixth of the time (the CI extras: 27 s against pip's 170 s, bytecode
# compiled as pip compiles it), given pip's find-links; where it cannot, pip installs as before.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv && UV_FIND_LINKS="$$PIP_FIND_LINKS" UV_HTTP_TIMEOUT=20 $(BIN)/uv pip install \
		--quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[$(EXTRAS)]' \
		|| $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

# Byte-compile our sources: where PYTHONDONTWRITEBYTECODE is set (container images often set it), every
# `heirloom` process compiled them again, a second or more per command and per daemon start on 2 cores.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q kernel plugins tests scripts bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Three workers on two cores: a fifth of the time two left idle goes to tests waiting on daemons and sockets
# (measured: 20 % idle with two, 10 % with three; the same files took 13 % less time).
test: lint bytecode
	$(BIN)/pytest -n 3 --dist loadfile

demo: bytecode
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find kernel plugins tests scripts bench -name __pycache__ -prune -exec rm -rf {} +
