#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, then
# runs pytest (end-to-end tests included; they start their own services:
# shipway servers, PostgreSQL, nginx, the S3 server, the ACME server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest "$@"
