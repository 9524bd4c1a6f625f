#!/usr/bin/env bash
# Regenerate the gRPC code of agent_api/grpc_v1 from its .proto files (needs the test extras:
# grpcio-tools for protoc, grpclib for its protoc plugin). The output is committed;
# tests/test_grpc.py checks that it is what these .proto files generate.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${1:-.}
PLUGIN=$(dirname "$PYTHON")/protoc-gen-grpclib_python
"$PYTHON" -m grpc_tools.protoc -I . --python_out="$OUT" --grpclib_python_out="$OUT" \
    --plugin=protoc-gen-grpclib_python="$PLUGIN" \
    agent_api/grpc_v1/router.proto agent_api/grpc_v1/enrollment.proto
