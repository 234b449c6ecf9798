#!/usr/bin/env bash
# Measures `revisit replay` on a visit log: wall time over repeated runs with hyperfine and peak
# memory with GNU time. Prints both; docs/benchmarks.md records the results.
#
# Usage: scripts/bench-replay.sh [VISIT_LOG] [RUNS]
# Default log: the reference storefront log beside the repository.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG="${1:-$ROOT/../shared/data/visit-logs/puffy-2025-02.jsonl}"
RUNS="${2:-10}"
if [ ! -f "$LOG" ]; then
  echo "visit log not found: $LOG" >&2
  exit 1
fi
for tool in hyperfine /usr/bin/time; do
  if ! command -v "$tool" >/dev/null; then
    echo "missing $tool: apt-get install -y hyperfine time" >&2
    exit 1
  fi
done

cd "$ROOT"
cargo build --release --locked -p revisit
BIN="$ROOT/target/release/revisit"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "== machine"
echo "cores: $(nproc), memory: $(free -h | awk '/Mem:/ {print $2}'), cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

echo "== report"
"$BIN" replay "$LOG" --outbox "$WORK/outbox" --quiet 2>/dev/null

echo "== wall time ($RUNS runs)"
hyperfine --warmup 1 --runs "$RUNS" --style basic \
  "$BIN replay $LOG --outbox $WORK/outbox --quiet"

echo "== peak memory"
/usr/bin/time -v "$BIN" replay "$LOG" --outbox "$WORK/outbox" --quiet 2>&1 >/dev/null |
  grep -E 'Maximum resident set size|Elapsed \(wall clock\)'
