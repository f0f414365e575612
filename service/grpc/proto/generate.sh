#!/usr/bin/env bash
# Regenerates the checked-in Python modules from grpc_predict_v2.proto with grpcio-tools
# (the dev extra). Imports are rewritten to the package path so the modules import as
# service.grpc.proto.* wherever the project is installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. grpc_predict_v2.proto
sed -i 's/^import grpc_predict_v2_pb2 as/from service.grpc.proto import grpc_predict_v2_pb2 as/' \
  grpc_predict_v2_pb2_grpc.py
