# bopask: one-command set-up. `make demo` and `make test` create .venv when missing, install
# the Debian packages they need when missing, and install the Python dependencies pinned in
# requirements.txt (torch CPU first). A second run installs nothing.

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.bopask-installed
# MuJoCo headless rendering (EGL, OSMesa fallback), open3d's libusb, and colcon (+ the ROS
# package types and the system setuptools it builds ament_python packages with) for the
# colcon build test.
DEB_PACKAGES := libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 libusb-1.0-0 \
	colcon python3-colcon-ros python3-setuptools
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export MUJOCO_GL ?= egl
PYTEST_ARGS ?=

.PHONY: all demo test lint system-deps venv clean

all: test

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

venv: system-deps $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt setup.py gen/setup.py
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip wheel setuptools
	$(VPY) -m pip install -q "$$(grep -E '^torch==' requirements.txt)"
	$(VPY) -m pip install -q -r requirements.txt -c requirements.txt
	$(VPY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(VPY) -m pip install -q --no-deps -e . -e gen
	@touch $(STAMP)

demo: venv
	$(VENV)/bin/bopask demo

test: venv
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build install log .pytest_cache .ruff_cache
