# make demo: a small pretrained start (made once, cached), synthetic faces with 30 % wrong labels, the baseline and tuned MTAC fine-tuned from it, a table (ufer demo --all: every method).
# make test: the test suite (what CI runs).
# Both create .venv if it is missing and install the project into it. torch comes from the
# `torch>=2.4` range in pyproject.toml: on the project machine pip's cap resolves it to the
# local 2.14.1 wheel; elsewhere pip takes the newest release (install a CUDA build first
# if your driver needs an older one).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ufer-installed
# MTCNN weights ship in this wheel; --no-deps keeps its torch<2.3 / numpy<2 pins from
# downgrading the environment (see the detect extra in pyproject.toml)
FACE_DETECTOR := facenet-pytorch==2.6.0
# dlib's face-recognition ResNet for tests/test_dlib_pretrained.py: `npm pack` + conversion
# the first time, afterwards only a sha256 check (docs/pretrained.md)
DLIB_FACE := .cache/ufer/dlib_face
export HF_HUB_OFFLINE := 1

.PHONY: demo test install weights clean-runs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev,export,bench,detect]'
	$(PY) -m pip install --quiet --no-deps $(FACE_DETECTOR)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ufer demo

weights: $(STAMP)
	$(VENV)/bin/ufer weights fetch dlib-face --out $(DLIB_FACE)

test: $(STAMP) weights
	$(PY) -m pytest -q

clean-runs:
	rm -rf runs/demo  # the demo's pretrained start stays in runs/cache
