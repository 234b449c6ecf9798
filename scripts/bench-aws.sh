#!/usr/bin/env bash
# Counts the AWS requests per event of the deployed path (collect -> SQS FIFO -> enrich ->
# DynamoDB) for a visit log, against a moto server started on 127.0.0.1 for the run.
#
#   scripts/bench-aws.sh [LOG] [MODE...]
#
# LOG defaults to ../shared/data/visit-logs/puffy-2025-02.jsonl; MODE is busy (full batches
# of 10) and/or paced (a batch per event); both by default. Reports go to target/bench-aws/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_FILE="${1:-$ROOT/../shared/data/visit-logs/puffy-2025-02.jsonl}"
shift || true
MODES=("$@")
[ "${#MODES[@]}" -gt 0 ] || MODES=(busy paced)

LOG_DIR="$(mktemp -d)"
CLEANUP=()
cleanup() {
  local command
  for command in "${CLEANUP[@]+"${CLEANUP[@]}"}"; do
    eval "$command" || true
  done
  rm -rf "$LOG_DIR"
}
trap cleanup EXIT
on_exit() {
  CLEANUP+=("$1")
}

# shellcheck source=scripts/test.d/setup-moto.sh
source scripts/test.d/setup-moto.sh

export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-0}"
mkdir -p target/bench-aws
cargo build --locked -p revisit-tests --example bench_aws
for mode in "${MODES[@]}"; do
  echo "==> $mode: $LOG_FILE"
  cargo run --quiet --locked -p revisit-tests --example bench_aws -- \
    "$LOG_FILE" --mode "$mode" --report "target/bench-aws/$mode.json"
done
