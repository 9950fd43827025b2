#!/usr/bin/env bash
# make eval: how well the score predicts churn, on an external history and on the generator.
#
#   scripts/eval.sh [SCORECARD]      (default: the built-in scorecard)
#
# Rows per history: held-out AUCs of risk = -score (fitted on nothing it is judged on), and the
# risk alerts' volume, lift and recall (scripts/alert_eval.py):
#   (a) the scorecard out of the box;
#   (b) `calibrate` (learned curves, weights and bands) on the fit period, then that scorecard;
#   (c) `replay --learn` (online learning, auto promotion; docs/learning.md). The generator's (c)
#       is judged from the replay's own scores (scripts/gen_auc.py), and so is an (a) beside it.
# socialnet7 (../shared/eval/socialnet7, ChurnSim; converted once into target/eval): `replay`,
# then its own scorer on observations from 2020-04-01. (b) is fitted on observations before
# 2020-04-01 whose 30-day outcome is known by then (--outcomes-until), as its rules require.
# The generator's default population: `backtest` with its labels, report-period AUC (second
# half of the observation dates); (b) is calibrate's own report-period figure.
# Needs python3; the socialnet7 rows are skipped without its data.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./target/release/healthscore
OUT=target/eval
SN7=${SN7_DIR:-../shared/eval/socialnet7}
mkdir -p "$OUT"
card_args=()
if [ $# -ge 1 ] && [ -n "$1" ]; then card_args=(--scorecard "$1"); fi

sn7_score() { # $1: output file -> "held-out=0.xxx tracked (green .., yellow .., red ..)"
    local auc bands
    auc=$(python3 "$SN7/score_auc.py" "$1" | grep -o 'held-out=[0-9.]*')
    bands=$(grep -o 'tracked ([^)]*)' "$2" | tail -1)
    echo "$auc $bands"
}

alerts() { # $1: events, $2: replay output -> "0.47 per customer-month, lift 1.41, recall 77%"
    python3 scripts/alert_eval.py --json "$1" "$2" | python3 -c 'import json,sys; a=json.load(sys.stdin)["all"]; print("%.2f per customer-month, lift %.2f, recall 7-90d %.0f%%" % (a["per_customer_month"], a["lift"], 100 * a["recall"]))'
}

printf '%-40s %s\n' history result
if [ -f "$SN7/to_events.py" ]; then
    [ -s "$OUT/sn7.ndjson" ] || python3 "$SN7/to_events.py" "$OUT/sn7.ndjson" >/dev/null
    "$BIN" replay --input "$OUT/sn7.ndjson" --output "$OUT/sn7-out.ndjson" "${card_args[@]}" >"$OUT/sn7-replay.log" 2>&1
    printf '%-40s %s\n' "socialnet7 (a) out of the box" "$(sn7_score "$OUT/sn7-out.ndjson" "$OUT/sn7-replay.log")"
    "$BIN" calibrate --input "$OUT/sn7.ndjson" "${card_args[@]}" --horizon-days 30 --outcomes-until 2020-04-01 \
        --split-date 2020-04-01 --output "$OUT/sn7-learned.toml" --force >"$OUT/sn7-calibrate.log" 2>&1
    "$BIN" replay --input "$OUT/sn7.ndjson" --output "$OUT/sn7-learned-out.ndjson" \
        --scorecard "$OUT/sn7-learned.toml" >"$OUT/sn7-learned-replay.log" 2>&1
    printf '%-40s %s\n' "socialnet7 (b) calibrate, then replay" \
        "$(sn7_score "$OUT/sn7-learned-out.ndjson" "$OUT/sn7-learned-replay.log")"
    "$BIN" replay --input "$OUT/sn7.ndjson" --output "$OUT/sn7-learn-out.ndjson" --learn "${card_args[@]}" \
        >"$OUT/sn7-learn-replay.log" 2>&1
    printf '%-40s %s\n' "socialnet7 (c) replay --learn" "$(sn7_score "$OUT/sn7-learn-out.ndjson" "$OUT/sn7-learn-replay.log")"
    printf '%-40s %s\n' "socialnet7 (a) risk alerts" "$(alerts "$OUT/sn7.ndjson" "$OUT/sn7-out.ndjson")"
else
    printf '%-40s %s\n' socialnet7 "skipped: no $SN7"
fi
[ -s "$OUT/gen.ndjson" ] || "$BIN" generate --output "$OUT/gen.ndjson" --labels "$OUT/gen-labels.csv" >/dev/null
"$BIN" backtest --input "$OUT/gen.ndjson" --labels "$OUT/gen-labels.csv" "${card_args[@]}" \
    --report "$OUT/gen-report.json" >"$OUT/gen-backtest.log" 2>&1
gen=$(grep '^report (>=' "$OUT/gen-backtest.log" | awk '{print "held-out=" $(NF-2)}')
printf '%-40s %s\n' "generator (a) out of the box" "$gen"
[ -s "$OUT/gen-out.ndjson" ] || "$BIN" replay --input "$OUT/gen.ndjson" --output "$OUT/gen-out.ndjson" "${card_args[@]}" >/dev/null 2>&1
printf '%-40s %s\n' "generator (a) risk alerts" "$(alerts "$OUT/gen.ndjson" "$OUT/gen-out.ndjson")"
"$BIN" calibrate --input "$OUT/gen.ndjson" --labels "$OUT/gen-labels.csv" "${card_args[@]}" \
    --output "$OUT/gen-learned.toml" --force >"$OUT/gen-calibrate.log" 2>&1
gen=$(grep '^REPORT period, .*-learned' "$OUT/gen-calibrate.log" | awk '{print "held-out=" $4}')
printf '%-40s %s\n' "generator (b) calibrate" "$gen"
printf '%-40s %s\n' "generator (a) from replay scores" \
    "$(python3 scripts/gen_auc.py "$OUT/gen-labels.csv" "$OUT/gen-out.ndjson" | cut -d' ' -f1)"
"$BIN" replay --input "$OUT/gen.ndjson" --output "$OUT/gen-learn-out.ndjson" --learn "${card_args[@]}" \
    >"$OUT/gen-learn-replay.log" 2>&1
printf '%-40s %s\n' "generator (c) replay --learn" \
    "$(python3 scripts/gen_auc.py "$OUT/gen-labels.csv" "$OUT/gen-learn-out.ndjson" | cut -d' ' -f1)"
