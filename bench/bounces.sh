#!/usr/bin/env bash
# Scores the bounce parser against the shared bounce corpus and prints the
# summary line. Uses `listrelay bounce parse` when the release binary exists,
# otherwise the bounce-json example (built here).
# Usage: bench/bounces.sh [extra score-bounces options, e.g. --failures 20]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scorer=${SCORE_BOUNCES:-}
if [ -z "$scorer" ]; then
    for cand in "$root/../shared/tools/score-bounces" /work/shared/tools/score-bounces; do
        if [ -x "$cand" ]; then scorer=$cand; break; fi
    done
fi
if [ -z "$scorer" ]; then
    echo "bench/bounces.sh: score-bounces not found (set SCORE_BOUNCES)" >&2
    exit 2
fi
if [ -x target/release/listrelay ] \
    && printf 'Subject: x\n\nx\n' | target/release/listrelay bounce parse 2>/dev/null | grep -q '"recipients"'; then
    cmd="$root/target/release/listrelay bounce parse"
else
    cargo build --quiet --release --example bounce-json
    cmd="$root/target/release/examples/bounce-json"
fi
out=$(python3 "$scorer" -j "$(nproc)" --no-mta "$@" "$cmd")
printf '%s\n' "$out" | head -n 1
if [ "$#" -gt 0 ]; then printf '%s\n' "$out" | tail -n +2; fi
