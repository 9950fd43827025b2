#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft, broker + controller in one JVM) for tests and local use, without Docker.
#
#   scripts/kafka.sh up                  fetch the pinned jars (once), start a fresh broker, print its bootstrap address
#   scripts/kafka.sh down                stop it (SIGTERM, then SIGKILL after 20 s) and remove its state dir
#   scripts/kafka.sh topics NAME:PARTITIONS[:compact]...   create topics (manual use; tests use rdkafka's admin client)
#   scripts/kafka.sh status              say whether it runs and where (exit 0 running, 1 not running)
#   scripts/kafka.sh restart             stop it cleanly and start it again on the same state
#   scripts/kafka.sh secure              print the path of a client properties file for its SASL_SSL listener
#
# `up` prints exactly one line on stdout, the bootstrap address; every other message goes to stderr, so
#   export KAFKA_BROKERS="$(scripts/kafka.sh up)"
# works. If a broker started by this script already runs on the same port, `up` reports it (address on stdout,
# exit 0) instead of starting a second one. See scripts/README.md for the environment variables.
set -euo pipefail

readonly KAFKA_VERSION=4.4.0
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly POM="$SCRIPT_DIR/kafka/pom.xml"
readonly CACHE_DIR="${HEALTHSCORE_KAFKA_CACHE:-$HOME/.cache/healthscore/kafka-$KAFKA_VERSION}"
readonly PORT="${KAFKA_PORT:-19092}"
readonly CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
# A second listener with TLS and SASL/SCRAM-SHA-512, for the tests of the clients' security settings.
readonly SASL_PORT="${KAFKA_SASL_PORT:-19094}"
readonly HOST=127.0.0.1
readonly BOOTSTRAP="$HOST:$PORT"
readonly STATE_DIR="${KAFKA_STATE_DIR:-${TMPDIR:-/tmp}/healthscore-kafka-$(id -u)-$PORT}"
readonly PID_FILE="$STATE_DIR/kafka.pid"
readonly BROKER_LOG="$STATE_DIR/broker.log"
readonly MARKER="$STATE_DIR/.healthscore-kafka"
readonly TLS_DIR="$STATE_DIR/tls"
readonly SECURE_CLIENT="$TLS_DIR/client.properties"
readonly SCRAM_USER=healthscore
readonly READY_TIMEOUT_S=60
readonly STOP_TIMEOUT_S=20
JAVA="${JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/}java}"
readonly JAVA

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

check_port_number() {
    if ! [[ "$2" =~ ^[0-9]+$ ]] || (("$2" < 1 || "$2" > 65535)); then
        die "$1 must be a TCP port number, got '$2'"
    fi
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# The PID of the broker this script started for $STATE_DIR, if it still runs; empty otherwise.
# The command line must mention our server.properties, so a recycled PID is never mistaken for the broker.
running_pid() {
    local pid args
    [[ -f "$PID_FILE" ]] || return 0
    pid="$(<"$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    if [[ -r "/proc/$pid/cmdline" ]]; then
        args="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    else
        args="$(ps -o args= -p "$pid" 2>/dev/null || true)"
    fi
    [[ "$args" == *"$STATE_DIR/server.properties"* ]] && echo "$pid"
    return 0
}

check_java() {
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found (Java 17 or newer is needed; set JAVA or JAVA_HOME)"
    local spec major
    spec="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')"
    major="${spec#1.}"
    major="${major%%.*}"
    if ! [[ "$major" =~ ^[0-9]+$ ]] || ((major < 17)); then
        die "Kafka $KAFKA_VERSION needs Java 17 or newer; $JAVA is '${spec:-unknown}'"
    fi
}

# Fetch the jars listed in scripts/kafka/pom.xml into $CACHE_DIR/lib unless that copy is complete and up to date.
ensure_jars() {
    local pom_sum stamp="$CACHE_DIR/.complete" tmp
    pom_sum="$(sha256sum "$POM" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(<"$stamp")" == "$pom_sum" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found: Maven is needed once to fetch Kafka $KAFKA_VERSION into $CACHE_DIR"
    log "fetching Apache Kafka $KAFKA_VERSION jars with Maven into $CACHE_DIR ..."
    mkdir -p "$CACHE_DIR"
    tmp="$(mktemp -d "$CACHE_DIR/.fetch.XXXXXX")"
    if ! mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$tmp/lib" -DincludeScope=runtime >"$tmp/mvn.log" 2>&1; then
        cat "$tmp/mvn.log" >&2
        rm -rf "$tmp"
        die "Maven could not fetch the Kafka jars (is Maven Central reachable?)"
    fi
    # Log configuration for the short-lived tools (StorageTool, TopicCommand): warnings only, to stderr.
    cat >"$tmp/tools-log4j2.properties" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
    rm -rf "${CACHE_DIR:?}/lib" "${CACHE_DIR:?}/tools-log4j2.properties"
    mv "$tmp/lib" "$CACHE_DIR/lib"
    mv "$tmp/tools-log4j2.properties" "$CACHE_DIR/tools-log4j2.properties"
    rm -rf "$tmp"
    echo "$pom_sum" >"$stamp"
    log "cached $(find "$CACHE_DIR/lib" -name '*.jar' | wc -l) jars ($(du -sh "$CACHE_DIR/lib" | cut -f1))"
}

# Run a short-lived Kafka command-line tool: run_tool MAIN_CLASS ARGS...
run_tool() {
    local main="$1"
    shift
    "$JAVA" -Xmx512m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$CACHE_DIR/tools-log4j2.properties" \
        -cp "$CACHE_DIR/lib/*" "$main" "$@"
}

# A random 22-character url-safe base64 cluster id (16 random bytes), not starting with '-' (as Kafka's own ids).
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)"
        [[ "$id" != -* ]] && break
    done
    echo "$id"
}

# A throw-away CA and a broker certificate for 127.0.0.1/localhost signed by it (TLS_DIR), a random
# SCRAM password, and the client properties file `secure` prints (librdkafka property names).
make_tls() {
    command -v openssl >/dev/null 2>&1 || die "openssl not found (needed for the SASL_SSL listener's certificates)"
    mkdir -p "$TLS_DIR"
    chmod 700 "$TLS_DIR"
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
            -subj "/CN=healthscore test CA" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem -days 2 \
            -extfile broker.ext 2>/dev/null
        # Kafka's PEM keystore: the PKCS#8 key (unencrypted) and the certificate chain in one file.
        openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.p8
        cat broker.p8 broker.pem ca.pem >broker-keystore.pem
        rm -f broker.csr broker.ext ca.srl broker.p8
    ) || die "making the test certificates in $TLS_DIR failed"
    SCRAM_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
    cat >"$SECURE_CLIENT" <<EOF
# librdkafka properties for the SASL_SSL listener of the broker scripts/kafka.sh started (test use only).
bootstrap.servers=$HOST:$SASL_PORT
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.username=$SCRAM_USER
sasl.password=$SCRAM_PASSWORD
ssl.ca.location=$TLS_DIR/ca.pem
EOF
    chmod 600 "$SECURE_CLIENT"
}

write_config() {
    cat >"$STATE_DIR/server.properties" <<EOF
# Single-node KRaft broker + controller written by scripts/kafka.sh (healthscore). Loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT,SASL_SSL://$HOST:$SASL_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,SASL_SSL://$HOST:$SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$STATE_DIR/data

# The SASL_SSL listener: a throw-away CA's certificate (make_tls), SCRAM-SHA-512 credentials
# stored at format time (StorageTool --add-scram). No authorizer: authenticated clients may do anything.
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/broker-keystore.pem

# One node: replication factor 1 and min ISR 1 everywhere, including every internal topic.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Faster tests: no initial rebalance delay, few internal partitions, topics only when asked for.
group.initial.rebalance.delay.ms=0
# Consumer-protocol (KIP-848) groups: notice a killed member in 6 s, not 45 s, so tests that kill one are quick.
group.consumer.min.session.timeout.ms=3000
group.consumer.session.timeout.ms=6000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=1000
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
auto.create.topics.enable=false
num.partitions=1
EOF
    cat >"$STATE_DIR/log4j2.properties" <<'EOF'
status = error
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.zk.name = org.apache.zookeeper
logger.zk.level = WARN
EOF
}

# True once the broker answers a metadata request listing at least one broker. No JVM and no kcat needed: send a
# Kafka Metadata v4 request (all topics) over bash's /dev/tcp and read the first 16 bytes of the response:
# size, correlation id (7), throttle time, broker count. (Kafka 4 removed Metadata v0-v3; v4 is its oldest.)
metadata_ok() {
    local reply
    reply="$(
        exec 2>/dev/null
        exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
        #       size=17          api=3   v=4     corr=7           client "hs"     topics=null(all)  no auto-create
        printf '\x00\x00\x00\x11\x00\x03\x00\x04\x00\x00\x00\x07\x00\x02hs\xff\xff\xff\xff\x00' >&3
        timeout 5 head -c 16 <&3 | od -An -tu1
    )" || return 1
    # shellcheck disable=SC2206 # word splitting of od's numbers is intended
    local -a b=($reply)
    ((${#b[@]} == 16)) || return 1
    ((b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 7)) || return 1
    (((b[12] << 24 | b[13] << 16 | b[14] << 8 | b[15]) >= 1))
}

# Stop the broker with PID $1: SIGTERM, wait up to STOP_TIMEOUT_S, then SIGKILL.
stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "broker (pid $pid) still running after ${STOP_TIMEOUT_S}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    die "could not stop broker pid $pid"
}

cmd_up() {
    check_port_number KAFKA_PORT "$PORT"
    check_port_number KAFKA_CONTROLLER_PORT "$CONTROLLER_PORT"
    check_port_number KAFKA_SASL_PORT "$SASL_PORT"
    [[ "$PORT" != "$CONTROLLER_PORT" && "$SASL_PORT" != "$PORT" && "$SASL_PORT" != "$CONTROLLER_PORT" ]] ||
        die "KAFKA_PORT, KAFKA_CONTROLLER_PORT and KAFKA_SASL_PORT must differ"

    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        log "already running (pid $pid, state $STATE_DIR); not starting another. Stop it with: scripts/kafka.sh down"
        echo "$BOOTSTRAP"
        return 0
    fi
    local p
    for p in "$PORT" "$CONTROLLER_PORT" "$SASL_PORT"; do
        if port_open "$p"; then
            die "port $HOST:$p is already in use by another process; free it or choose other ports with KAFKA_PORT / KAFKA_CONTROLLER_PORT"
        fi
    done

    check_java
    ensure_jars

    # A fresh state dir every time. Only ever delete a directory this script created (it holds the marker file).
    if [[ -e "$STATE_DIR" ]]; then
        if [[ -f "$MARKER" ]]; then
            rm -rf "${STATE_DIR:?}"
        elif [[ -n "$(ls -A "$STATE_DIR" 2>/dev/null)" ]]; then
            die "KAFKA_STATE_DIR $STATE_DIR exists, is not empty and was not created by this script; refusing to use it"
        fi
    fi
    mkdir -p "$STATE_DIR"
    touch "$MARKER"
    make_tls
    write_config

    local started=$SECONDS cluster_id
    cluster_id="$(new_cluster_id)"
    if ! run_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$STATE_DIR/server.properties" \
        --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]" >"$STATE_DIR/format.log" 2>&1; then
        cat "$STATE_DIR/format.log" >&2
        die "formatting the storage in $STATE_DIR failed"
    fi

    start_broker "$started"
}

# Starts the JVM on the formatted state in $STATE_DIR and waits until it answers.
start_broker() {
    local started="$1" pid
    log "starting Kafka $KAFKA_VERSION (KRaft) on $BOOTSTRAP, controller $HOST:$CONTROLLER_PORT, state $STATE_DIR"
    nohup "$JAVA" -Xmx1g -Xms256m -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$STATE_DIR/log4j2.properties" \
        -cp "$CACHE_DIR/lib/*" kafka.Kafka "$STATE_DIR/server.properties" \
        >>"$BROKER_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"

    local deadline=$((SECONDS + READY_TIMEOUT_S)) why=""
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            why="the broker exited during startup"
            break
        fi
        if port_open "$PORT" && metadata_ok; then
            break
        fi
        if ((SECONDS >= deadline)); then
            why="the broker did not answer within ${READY_TIMEOUT_S}s"
            break
        fi
        sleep 0.3
    done
    if [[ -n "$why" ]]; then
        log "$why; last 50 lines of $BROKER_LOG:"
        tail -n 50 "$BROKER_LOG" >&2 || true
        if kill -0 "$pid" 2>/dev/null; then
            stop_pid "$pid" || true
        fi
        rm -f "$PID_FILE"
        die "startup failed (state and log kept in $STATE_DIR)"
    fi
    log "ready in $((SECONDS - started))s (pid $pid, log $BROKER_LOG)"
    echo "$BOOTSTRAP"
}

# Stops the broker cleanly and starts it again on the same state (topics, offsets and
# transactions survive): how the tests check that clients ride out a broker restart.
cmd_restart() {
    local pid
    pid="$(running_pid)"
    [[ -n "$pid" ]] || die "no broker started by this script is running for $BOOTSTRAP"
    log "restarting broker (pid $pid) on $BOOTSTRAP ..."
    stop_pid "$pid"
    rm -f "$PID_FILE"
    start_broker "$SECONDS"
}

cmd_down() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        log "no broker started by this script is running for $BOOTSTRAP (state $STATE_DIR); nothing to stop"
    else
        log "stopping broker (pid $pid) on $BOOTSTRAP ..."
        stop_pid "$pid"
        log "stopped"
    fi
    if [[ -f "$MARKER" ]]; then
        if [[ "${KAFKA_KEEP_STATE:-0}" == 1 ]]; then
            rm -f "$PID_FILE"
            log "kept state in $STATE_DIR (KAFKA_KEEP_STATE=1)"
        else
            rm -rf "${STATE_DIR:?}"
        fi
    fi
}

cmd_topics() {
    (($# > 0)) || die "usage: scripts/kafka.sh topics NAME:PARTITIONS[:compact]..."
    local brokers="${KAFKA_BROKERS:-$BOOTSTRAP}" spec name partitions policy
    local -a extra
    for spec in "$@"; do
        [[ "$spec" =~ ^([A-Za-z0-9._-]+):([0-9]+)(:compact)?$ ]] || die "bad topic spec '$spec' (want NAME:PARTITIONS or NAME:PARTITIONS:compact)"
        name="${BASH_REMATCH[1]}"
        partitions="${BASH_REMATCH[2]}"
        policy="${BASH_REMATCH[3]#:}"
        ((partitions > 0)) || die "topic $name: partitions must be positive"
        check_java
        ensure_jars
        extra=()
        [[ -n "$policy" ]] && extra=(--config cleanup.policy=compact)
        run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --create --if-not-exists \
            --topic "$name" --partitions "$partitions" --replication-factor 1 "${extra[@]}" >&2 ||
            die "creating topic $name on $brokers failed"
        log "topic $name: $partitions partition(s)${policy:+, compacted} on $brokers"
    done
}

# Prints the client properties file for the SASL_SSL listener (bootstrap, SCRAM credentials, CA).
cmd_secure() {
    [[ -n "$(running_pid)" ]] || die "no broker started by this script is running for $BOOTSTRAP"
    [[ -f "$SECURE_CLIENT" ]] || die "$SECURE_CLIENT is missing: the broker was started by an older scripts/kafka.sh; stop it (down) and start it again (up)"
    echo "$SECURE_CLIENT"
}

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        if port_open "$PORT"; then
            echo "running: pid $pid, bootstrap $BOOTSTRAP, SASL_SSL $HOST:$SASL_PORT, controller $HOST:$CONTROLLER_PORT, state $STATE_DIR, log $BROKER_LOG"
        else
            echo "starting or stuck: pid $pid runs but $BOOTSTRAP does not accept connections; log $BROKER_LOG"
        fi
        [[ -n "${KAFKA_BROKERS:-}" ]] && echo "note: KAFKA_BROKERS is set to $KAFKA_BROKERS"
        return 0
    fi
    echo "not running (no broker started by this script for $BOOTSTRAP, state dir $STATE_DIR)"
    [[ -n "${KAFKA_BROKERS:-}" ]] && echo "note: KAFKA_BROKERS is set to $KAFKA_BROKERS (an external cluster?)"
    return 1
}

main() {
    (($# > 0)) || usage
    local cmd="$1"
    shift
    case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    topics) cmd_topics "$@" ;;
    status) cmd_status ;;
    restart) cmd_restart ;;
    secure) cmd_secure ;;
    -h | --help | help) usage ;;
    *) log "unknown command '$cmd'"; usage ;;
    esac
}

main "$@"
