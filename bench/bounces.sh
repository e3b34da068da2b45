#!/usr/bin/env bash
# Scores the bounce parser against the shared bounce corpus and prints the
# summary line. Uses `listrelay bounce parse` when the release binary exists,
# otherwise the bounce-json example (built here).
# Usage: bench/bounces.sh [extra score-bounces options, e.g. --failures 20]
#        bench/bounces.sh attacks   (times the hostile bounces of issue 11)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
if [ "${1:-}" = attacks ]; then
    cargo build --quiet --release --example bounce-json
    tmp=$(mktemp)
    trap 'rm -f "$tmp"' EXIT
    for a in "repeat 2000" "repeat 16000" "repeat 26000" "longline 775000" \
        "longline 1300000" "addresses 40000"; do
        # shellcheck disable=SC2086
        python3 bench/bounce-attacks.py $a >"$tmp"
        /usr/bin/time -f "$a: $(wc -c <"$tmp") bytes, %e s, %M KiB" \
            target/release/examples/bounce-json <"$tmp" >/dev/null
    done
    exit 0
fi
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

# The reference, measured in the same run: GNU Mailman's parser (flufl.bounce,
# from PyPI; installed for this user if missing).
python3 -c 'import flufl.bounce' 2>/dev/null || python3 -m pip install --quiet --user flufl.bounce >/dev/null 2>&1 || true
if python3 -c 'import flufl.bounce' 2>/dev/null; then
    ref=$(python3 "$scorer" -j "$(nproc)" --no-mta "python3 $root/bench/mailman_bounce.py" | head -n 1)
    printf '%s\n' "$ref"
    ours=$(printf '%s\n' "$out" | head -n 1 | sed -n 's/.*recipient_exact=\([0-9.]*\)%.*/\1/p')
    theirs=$(printf '%s\n' "$ref" | sed -n 's/.*recipient_exact=\([0-9.]*\)%.*/\1/p')
    python3 -c "print(f'recipient_exact: listrelay {$ours}% / Mailman {$theirs}% = {$ours/$theirs:.2f}x')"
else
    echo "reference (flufl.bounce) not available: no ratio"
fi
