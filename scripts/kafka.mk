# Local single-node Apache Kafka (KRaft, no Docker) for the tests that need a real broker. See scripts/README.md.
# Included from the top-level Makefile:  include scripts/kafka.mk
#
#   make kafka-up      fetch Kafka 4.4.0 once (Maven), start a fresh broker, print its address (127.0.0.1:19092)
#   make kafka-down    stop it and delete its state (exits 0 when nothing runs)
#   make kafka-status  say whether it runs
#
# KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_STATE_DIR, KAFKA_KEEP_STATE and HEALTHSCORE_KAFKA_CACHE are read from the
# environment; `make kafka-up KAFKA_PORT=29092` works too (make passes command-line variables to the script).
# To test against another cluster, do not run kafka-up; set KAFKA_BROKERS for the tests instead.

KAFKA_SH := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/kafka.sh

.PHONY: kafka-up kafka-down kafka-status

kafka-up:
	@$(KAFKA_SH) up

kafka-down:
	@$(KAFKA_SH) down

kafka-status:
	@$(KAFKA_SH) status || true
