#!/usr/bin/env bash
# `make bench-replay`: replay's speed and resident memory on a generated history of >= 8 M lines,
# against two references measured in the same run on the same file:
#   - the parse ceiling: plain serde_json typed parse of every line (examples/parse_ceiling.rs);
#   - the warehouse batch: DuckDB's daily-score job (../shared/bench/duckdb), 1 thread and all cores.
# Then, with LONG=1, the same replay on a history 10 times longer (10 shifted copies, as 10 files).
# Prints one table; figures go to docs/performance-log.md by hand (this machine is shared).
#
# Env: CUSTOMERS (1000), DAYS (330), THREADS (nproc), LONG (0), DUCKDB_PY (a venv's python with
# duckdb==2.0.1; made in /tmp/duckdb-venv if missing), BENCH_DIR (target/bench).
set -euo pipefail
cd "$(dirname "$0")/.."

CUSTOMERS=${CUSTOMERS:-1000}
DAYS=${DAYS:-330}
THREADS=${THREADS:-$(nproc)}
LONG=${LONG:-0}
DIR=${BENCH_DIR:-target/bench}
BIN=target/release/healthscore
SHARED_DUCKDB=${SHARED_DUCKDB:-../shared/bench/duckdb}
[ -d "$SHARED_DUCKDB" ] || SHARED_DUCKDB=/work/shared/bench/duckdb
mkdir -p "$DIR"

cargo build --release --locked --bin healthscore --example parse_ceiling >&2
CEILING=target/release/examples/parse_ceiling

HISTORY="$DIR/history-${CUSTOMERS}x${DAYS}.ndjson"
if [ ! -s "$HISTORY" ]; then
	echo "generating $HISTORY" >&2
	# No malformed lines: DuckDB's reader stops at the first one.
	"$BIN" generate --customers "$CUSTOMERS" --days "$DAYS" --seed 42 --bad-input-rate 0 --output "$HISTORY.tmp" >&2
	mv "$HISTORY.tmp" "$HISTORY"
fi
LINES=$(wc -l <"$HISTORY")

if [ -z "${DUCKDB_PY:-}" ]; then
	DUCKDB_PY=/tmp/duckdb-venv/bin/python
	if ! "$DUCKDB_PY" -c 'import duckdb' 2>/dev/null; then
		python3 -m venv /tmp/duckdb-venv >&2
		/tmp/duckdb-venv/bin/pip install -q duckdb==2.0.1 >&2
	fi
fi

# Runs "$@" under /usr/bin/time; prints "<wall seconds> <max RSS MB>".
measure() {
	local log="$DIR/time.log"
	/usr/bin/time -f '%e %M' -o "$log" "$@" >"$DIR/last.stdout" 2>"$DIR/last.stderr" || {
		cat "$DIR/last.stderr" >&2
		return 1
	}
	awk '{ printf "%s %.0f\n", $1, $2 / 1024 }' "$log"
}

row() { # name seconds rss lines
	awk -v n="$1" -v s="$2" -v m="$3" -v l="$4" 'BEGIN { printf "| %-44s | %7.2f s | %9.2f M lines/s | %6d MB |\n", n, s, l / s / 1e6, m }'
}

echo "history: $HISTORY ($LINES lines, $(du -m "$HISTORY" | cut -f1) MB); $(nproc) cores" >&2
cat "$HISTORY" >/dev/null # in the page cache for every run alike

read -r ceil_s ceil_m < <(measure "$CEILING" "$HISTORY")
read -r rep_s rep_m < <(measure "$BIN" replay -q --threads 1 --input "$HISTORY" --output "$DIR/replay.out")
read -r rept_s rept_m < <(measure "$BIN" replay -q --threads "$THREADS" --input "$HISTORY" --output "$DIR/replay-t.out")
read -r repn_s repn_m < <(measure "$BIN" replay -q --threads "$THREADS" --partitions "$THREADS" --input "$HISTORY" --output "$DIR/replay-p.out")
read -r duck1_s duck1_m < <(measure "$DUCKDB_PY" "$SHARED_DUCKDB/run.py" "$HISTORY" "$DIR/duck" --threads 1)
read -r duckn_s duckn_m < <(measure "$DUCKDB_PY" "$SHARED_DUCKDB/run.py" "$HISTORY" "$DIR/duck" --threads 0)

echo "| run (whole process, wall) | time | lines/s | max RSS |"
echo "|---|---|---|---|"
row "serde_json typed parse (ceiling), 1 thread" "$ceil_s" "$ceil_m" "$LINES"
row "replay, 1 partition, --threads 1" "$rep_s" "$rep_m" "$LINES"
row "replay, 1 partition, --threads $THREADS" "$rept_s" "$rept_m" "$LINES"
row "replay --partitions $THREADS --threads $THREADS" "$repn_s" "$repn_m" "$LINES"
row "DuckDB daily scores, 1 thread" "$duck1_s" "$duck1_m" "$LINES"
row "DuckDB daily scores, all cores" "$duckn_s" "$duckn_m" "$LINES"
awk -v r="$rep_s" -v c="$ceil_s" -v d="$duck1_s" -v rn="$repn_s" -v dn="$duckn_s" 'BEGIN {
	printf "replay / parse ceiling (speed, 1 thread): %.2f (target >= 0.8)\n", c / r
	printf "replay time / DuckDB time, 1 thread: %.2f; %s partitions / DuckDB all cores: %.2f (target <= 1)\n", r / d, "'"$THREADS"'", rn / dn
}'

if [ "$LONG" = 1 ]; then
	# 10 copies, each shifted by the history's length in days, one file each: a history 10x longer.
	LONGDIR="$DIR/long-${CUSTOMERS}x${DAYS}"
	mkdir -p "$LONGDIR"
	files=()
	for k in $(seq 0 9); do
		f="$LONGDIR/part$k.ndjson"
		if [ ! -s "$f" ]; then
			"$BIN" generate --customers "$CUSTOMERS" --days "$DAYS" --seed 42 --bad-input-rate 0 \
				--end "$(date -u -d "2026-11-01 + $((k * DAYS)) days" +%F)" --output "$f.tmp" >&2
			mv "$f.tmp" "$f"
		fi
		files+=("$f")
	done
	read -r long_s long_m < <(measure "$BIN" replay -q --threads 1 --input "${files[@]}" --output "$DIR/replay-long.out")
	row "replay, 10x longer history (10 files)" "$long_s" "$long_m" "$((LINES * 10))"
	awk -v a="$rep_m" -v b="$long_m" 'BEGIN { printf "RSS 10x / 1x: %.2f (target 0.9-1.1)\n", b / a }'
fi
