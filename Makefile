# Relay: `make run` runs everything locally, `make test` runs every test.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip --disable-pip-version-check
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt Makefile | cksum | cut -d' ' -f1)

# requirements.txt is the lock: every package, transitive ones included, pinned with its
# hashes, compiled from requirements.in by `make lock`. Installs check the hashes
# (--require-hashes), so a package that changed on the index since it was locked fails.

# llama.cpp is compiled from source by pip. Left to itself it targets the build
# host's CPU (GGML_NATIVE), and the binary dies with SIGILL on a host without
# the same extensions (AVX-512, or AMX that the kernel does not enable). Relay
# builds one portable x86-64 target instead: AVX2/FMA/F16C, nothing newer.
LLAMA_VERSION := $(shell sed -n 's/^llama-cpp-python==\([^ ;\\]*\).*/\1/p' requirements.txt)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF \
	-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
	-DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF
# The portable wheel is kept under a name derived from its version and flags,
# never in pip's own wheel cache (which may hold a native build of the same
# version and would be reused silently). It is built from the sdist that the lock's
# hash verifies (pip downloads it with --require-hashes first).
LLAMA_KEY   := $(shell echo '$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)' | cksum | cut -d' ' -f1)
WHEELHOUSE  ?= $(HOME)/.cache/relay/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_KEY)

.PHONY: run test lint format install bench clean llama-wheel provision-test provision-run stop lock audit sbom

$(STAMP): requirements.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(MAKE) --no-print-directory llama-wheel
	$(PIP) install -q --no-deps --no-index --force-reinstall \
		--find-links $(WHEELHOUSE) llama-cpp-python==$(LLAMA_VERSION)
	$(PIP) install -q --require-hashes -r requirements.txt
	$(BIN)/python -m workers.providers.local
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

llama-wheel:
	@if ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "llama-cpp-python: portable wheel in $(WHEELHOUSE)"; \
	else \
		echo "llama-cpp-python: building a portable wheel (AVX2, no AVX-512/AMX; about 6 minutes, once)"; \
		rm -rf $(WHEELHOUSE).tmp $(WHEELHOUSE).src && mkdir -p $(WHEELHOUSE).tmp $(WHEELHOUSE).src && \
		sed -n '/^llama-cpp-python==/,/[^\\]$$/p' requirements.txt > $(WHEELHOUSE).src/lock.txt && \
		$(PIP) download -q --no-deps --no-binary :all: --require-hashes \
			-r $(WHEELHOUSE).src/lock.txt -d $(WHEELHOUSE).src && \
		CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' FORCE_CMAKE=1 CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
			$(PIP) wheel -q --no-deps --no-cache-dir -w $(WHEELHOUSE).tmp $(WHEELHOUSE).src/*.tar.gz && \
		rm -rf $(WHEELHOUSE) $(WHEELHOUSE).src && mv $(WHEELHOUSE).tmp $(WHEELHOUSE); \
	fi

install: $(STAMP)

# Release gates (docs/releasing.md). `make lock` recompiles the lock from requirements.in,
# keeping the pins it already has (LOCK_FLAGS=--upgrade-package NAME moves one).
LOCK_FLAGS ?=
lock: install
	CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(LOCK_FLAGS) -o requirements.txt requirements.in
	@{ printf '%s\n' '# A new dependency goes into requirements.in, then `make lock` recompiles this file: never edit it by hand.' \
		'# The lock: every package Relay installs, pinned and hashed (pip install --require-hashes).'; \
		cat requirements.txt; } > requirements.txt.tmp && mv requirements.txt.tmp requirements.txt

# Known vulnerabilities, from PyPI's advisory data (needs the internet). Fails on any finding
# not in AUDIT_IGNORE (lines: ID YYYY-MM-DD package reason), and when any package could not be
# audited: those are listed, and an audit that skipped a package is not a pass.
AUDIT_IGNORE ?= .pip-audit-ignore
PIP_AUDIT    ?= $(BIN)/pip-audit
audit: install
	@awk '!/^[ \t]*(#|$$)/ && (NF < 4 || $$2 !~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]$$/) { \
		print FILENAME ":" FNR ": want: ID YYYY-MM-DD package reason"; bad = 1 } END { exit bad }' $(AUDIT_IGNORE)
	@report=$$(mktemp) && status=0 && \
	$(PIP_AUDIT) --require-hashes --disable-pip -r requirements.txt --progress-spinner off --desc on \
		$$(awk '!/^[ \t]*(#|$$)/ { print "--ignore-vuln", $$1 }' $(AUDIT_IGNORE)) > $$report || status=$$?; \
	cat $$report; \
	skipped=$$(awk '/^Name +Skip Reason/ { s = 1; getline; next } s && NF { n++ } END { print n + 0 }' $$report); \
	rm -f $$report; \
	if [ $$skipped -gt 0 ]; then echo "audit: $$skipped packages could not be audited (listed above)"; exit 1; fi; \
	exit $$status

# A CycloneDX SBOM of the installed (locked) environment.
SBOM          ?= sbom.cdx.json
SBOM_VALIDATE ?= --validate
sbom: install
	$(BIN)/cyclonedx-py environment --pyproject pyproject.toml --mc-type application --output-reproducible \
		$(SBOM_VALIDATE) --of JSON -o $(SBOM) $(BIN)/python

# Provisioning (app/provision.py): before anything slow, the programs a target needs are
# installed with apt when running as root, or the run stops naming the one command to run.
# Stores that do not answer on their configured address are started privately under instance/.
provision-test:
	@$(PYTHON) app/provision.py programs test

provision-run:
	@$(PYTHON) app/provision.py programs run

run: provision-run install
	$(BIN)/python -m app.devserver

# Stop the private Redis and PostgreSQL that `make test` or `make run` started under instance/.
stop:
	$(BIN)/python -m app.provision stop

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: provision-test lint
	$(BIN)/python -m app.provision test -- $(BIN)/pytest

bench: install
	$(BIN)/python bench/stream_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
