# healthscore — the two commands a newcomer needs: `make run` and `make test`.
CARGO ?= cargo
SAMPLE := data/sample.ndjson

.PHONY: run test build bench lint fmt sample clean

## Replay the bundled sample history through the engine (no Kafka needed) and show a summary.
run: build
	./target/release/healthscore replay --input $(SAMPLE) --output target/sample-output.ndjson --dead-letters target/sample-dead-letters.ndjson
	@echo "outputs: target/sample-output.ndjson   dead letters: target/sample-dead-letters.ndjson"
	@echo "latest alerts:"; grep '"type":"alert"' target/sample-output.ndjson | tail -n 5 | cut -c1-220

build:
	$(CARGO) build --release --locked

## Every test: unit, property, schema and end-to-end.
test:
	$(CARGO) test --release --locked

bench:
	$(CARGO) bench --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
include scripts/kafka.mk
