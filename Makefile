# Relay: `make run` runs everything locally, `make test` runs every test.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt Makefile | cksum | cut -d' ' -f1)

# llama.cpp is compiled from source by pip. Left to itself it targets the build
# host's CPU (GGML_NATIVE), and the binary dies with SIGILL on a host without
# the same extensions (AVX-512, or AMX that the kernel does not enable). Relay
# builds one portable x86-64 target instead: AVX2/FMA/F16C, nothing newer.
LLAMA_VERSION := $(shell sed -n 's/^llama-cpp-python==//p' requirements.txt)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_BACKEND_DL=OFF \
	-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
	-DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF
# The portable wheel is kept under a name derived from its version and flags,
# never in pip's own wheel cache (which may hold a native build of the same
# version and would be reused silently).
LLAMA_KEY   := $(shell echo '$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)' | cksum | cut -d' ' -f1)
WHEELHOUSE  ?= $(HOME)/.cache/relay/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_KEY)

.PHONY: run test lint format install bench clean llama-wheel provision-test provision-run stop

$(STAMP): requirements.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	@$(MAKE) --no-print-directory llama-wheel
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-index --force-reinstall \
		--find-links $(WHEELHOUSE) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m workers.providers.local
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

llama-wheel:
	@if ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "llama-cpp-python: portable wheel in $(WHEELHOUSE)"; \
	else \
		echo "llama-cpp-python: building a portable wheel (AVX2, no AVX-512/AMX; about 6 minutes, once)"; \
		mkdir -p $(WHEELHOUSE).tmp && \
		CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' FORCE_CMAKE=1 CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
			$(BIN)/pip wheel --disable-pip-version-check -q --no-deps --no-cache-dir \
			--no-binary llama-cpp-python -w $(WHEELHOUSE).tmp llama-cpp-python==$(LLAMA_VERSION) && \
		rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE); \
	fi

install: $(STAMP)

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
