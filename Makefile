# healthscore — the two commands a newcomer needs: `make run` and `make test`.
CARGO ?= cargo
# The sample: a seeded synthetic population (200 customers, 120 days, a little bad input), made
# by the built-in generator (~1 s). Same seed, same bytes, on every machine.
SAMPLE := target/sample/events.ndjson

.PHONY: run replay test test-kafka build bench bench-kafka bench-replay eval fuzz fuzz-smoke lint check-deploy fmt clean

## The whole pipeline on an in-process mock Kafka cluster with a synthetic population (no Kafka
## needed): a live summary every second for DURATION seconds (Ctrl-C stops it sooner).
DURATION ?= 30
run: build
	./target/release/healthscore demo --duration $(DURATION)

## Replay the bundled sample history through the engine and show a summary.
replay: build $(SAMPLE)
	./target/release/healthscore replay --input $(SAMPLE) --output target/sample/output.ndjson --dead-letters target/sample/dead-letters.ndjson
	@echo "outputs: target/sample/output.ndjson   dead letters: target/sample/dead-letters.ndjson"
	@echo "latest alerts:"; grep '"type":"alert"' target/sample/output.ndjson | tail -n 5 | cut -c1-240

# Remade whenever the binary changes, so the sample always matches the generator.
$(SAMPLE): build
	@mkdir -p $(dir $(SAMPLE))
	./target/release/healthscore generate --customers 200 --days 120 --seed 42 --output $(SAMPLE) --labels $(dir $(SAMPLE))labels.csv

build:
	$(CARGO) build --release --locked

## Every test: unit, property, schema, end-to-end, then the Kafka tests on a real broker.
test:
	$(CARGO) test --release --locked
	$(MAKE) test-kafka

# Runs $(1) with KAFKA_BROKERS set: that cluster if it is set, else the local broker
# (scripts/kafka.sh; Java + Maven), started for the run and stopped after it, or left running
# if it was already running before.
define with_broker
	@if [ -n "$$KAFKA_BROKERS" ]; then \
		$(1); \
	elif scripts/kafka.sh status >/dev/null 2>&1; then \
		export KAFKA_BROKERS="$$(scripts/kafka.sh up)" && $(1); \
	else \
		export KAFKA_BROKERS="$$(scripts/kafka.sh up)" && trap 'scripts/kafka.sh down' EXIT && $(1); \
	fi
endef

## The Kafka tests on a real broker (see with_broker).
test-kafka:
	$(call with_broker,$(CARGO) test --release --locked --test kafka --test kafka_security -- --ignored --test-threads=1)

## healthscore draining >= 5 M events from a real broker vs a consumer that only counts.
bench-kafka:
	$(call with_broker,$(CARGO) bench --locked --bench kafka)

## Benchmarks: hot path against a serde_json reference, state size and timer cost at 1M customers,
## then the Kafka drain's processing-thread work without Kafka (CPU-s per M events).
bench:
	$(CARGO) bench --locked --bench engine
	$(CARGO) bench --locked --bench state
	$(CARGO) bench --locked --bench drain

## How well the score predicts churn: held-out AUC on ../shared/eval/socialnet7 (if present) and
## on the generator's history. SCORECARD=path scores another scorecard.
eval: build
	scripts/eval.sh $(SCORECARD)

## Fuzzing (cargo-fuzz, libFuzzer; nightly): each target in fuzz/fuzz_targets for FUZZ_SECONDS.
FUZZ_SECONDS ?= 300
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

## The short fuzzing run CI makes: 20 s a target from the seeds.
fuzz-smoke:
	scripts/fuzz.sh 20

lint: check-deploy
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --locked

## deploy/: promtool on the rules (and their unit tests) and on a real /metrics scrape of the
## demo, every YAML file parsed, the dashboard's datasource variable, the k8s ConfigMap checked.
check-deploy: build
	scripts/check-deploy.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
include scripts/kafka.mk

## replay's lines/s and resident memory on a generated 9 M-line history, against a plain
## serde_json parse and DuckDB's daily-score batch of the same file (LONG=1: also a history 10x
## longer; ~15 GB of disk under target/bench).
bench-replay:
	scripts/bench-replay.sh
