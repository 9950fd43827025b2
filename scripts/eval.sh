#!/usr/bin/env bash
# make eval: how well the score predicts churn, on an external history and on the generator.
#
#   scripts/eval.sh [SCORECARD]      (default: the built-in scorecard)
#
# socialnet7 (../shared/eval/socialnet7, ChurnSim; converted once into target/eval): `replay`,
# then its own scorer: held-out AUC (observations from 2020-04-01) of risk = -score.
# The generator's default population: `backtest` with its labels, report-period AUC.
# Prints one line per history. Needs python3; the socialnet7 row is skipped without its data.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./target/release/healthscore
OUT=target/eval
SN7=${SN7_DIR:-../shared/eval/socialnet7}
mkdir -p "$OUT"
card_args=()
if [ $# -ge 1 ]; then card_args=(--scorecard "$1"); fi

printf '%-28s %s\n' history result
if [ -f "$SN7/to_events.py" ]; then
    [ -s "$OUT/sn7.ndjson" ] || python3 "$SN7/to_events.py" "$OUT/sn7.ndjson" >/dev/null
    "$BIN" replay --input "$OUT/sn7.ndjson" --output "$OUT/sn7-out.ndjson" "${card_args[@]}" >"$OUT/sn7-replay.log" 2>&1
    auc=$(python3 "$SN7/score_auc.py" "$OUT/sn7-out.ndjson" | grep -o 'held-out=[0-9.]*')
    bands=$(grep -o 'tracked ([^)]*)' "$OUT/sn7-replay.log" | tail -1)
    printf '%-28s %s %s\n' socialnet7 "$auc" "$bands"
else
    printf '%-28s %s\n' socialnet7 "skipped: no $SN7"
fi
[ -s "$OUT/gen.ndjson" ] || "$BIN" generate --output "$OUT/gen.ndjson" --labels "$OUT/gen-labels.csv" >/dev/null
"$BIN" backtest --input "$OUT/gen.ndjson" --labels "$OUT/gen-labels.csv" "${card_args[@]}" \
    --report "$OUT/gen-report.json" >"$OUT/gen-backtest.log" 2>&1
gen=$(grep '^report (>=' "$OUT/gen-backtest.log" | awk '{print "held-out=" $(NF-2)}')
printf '%-28s %s\n' "generator (default, seed 42)" "$gen"
