#!/usr/bin/env bash
# Checks deploy/ with the linters that run here (no container engine, no cluster):
#   - promtool: the rules parse and their unit tests pass; the compose Prometheus config parses;
#     `promtool check metrics` lints a real scrape of the demo's /metrics;
#   - every YAML file parses (python3-yaml), the dashboard JSON parses and uses the
#     datasource variable, and each k8s ServiceMonitor selects exactly one Service.
# That the dashboard's and rules' metric names are all exported is tests/ops.rs (make test).
# Needs target/release/healthscore (make build), promtool (Debian: prometheus), python3-yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/healthscore}

promtool check rules deploy/prometheus/rules.yml
(cd deploy/prometheus && promtool test rules rules.test.yml)
promtool check config --syntax-only deploy/compose/prometheus.yml

python3 - <<'PY'
import glob, json, sys
import yaml
bad = 0
for path in sorted(glob.glob("deploy/**/*.y*ml", recursive=True)):
    try:
        docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
        print(f"yaml ok: {path} ({len(docs)} document(s))")
    except yaml.YAMLError as e:
        print(f"yaml error: {path}: {e}", file=sys.stderr)
        bad += 1
for path in sorted(glob.glob("deploy/grafana/*.json")):
    d = json.load(open(path))
    names = [v["name"] for v in d["templating"]["list"]]
    if "datasource" not in names:
        print(f"{path}: no `datasource` template variable", file=sys.stderr)
        bad += 1
    for p in d["panels"]:
        if p["type"] != "row" and p.get("datasource", {}).get("uid") != "${datasource}":
            print(f"{path}: panel {p['title']!r} does not use ${{datasource}}", file=sys.stderr)
            bad += 1
    print(f"dashboard ok: {path} ({len(d['panels'])} panels)")
# Each ServiceMonitor selects exactly one Service: with two, every pod is scraped twice and the
# dashboard's sum()s double-count.
k8s = [d for path in sorted(glob.glob("deploy/k8s/*.y*ml")) for d in yaml.safe_load_all(open(path)) if d]
services = [d for d in k8s if d.get("kind") == "Service"]
for sm in (d for d in k8s if d.get("kind") == "ServiceMonitor"):
    wanted = sm["spec"]["selector"].get("matchLabels", {})
    hits = [s["metadata"]["name"] for s in services
            if all(s["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
    if len(hits) != 1:
        print(f"ServiceMonitor {sm['metadata']['name']}: selects {len(hits)} Services {hits}, want exactly 1"
              " (each pod would be scraped once per Service)", file=sys.stderr)
        bad += 1
    else:
        print(f"servicemonitor ok: {sm['metadata']['name']} scrapes Service {hits[0]}")
cm = yaml.safe_load(open("deploy/k8s/configmap.yaml"))
open("target/k8s-healthscore.toml", "w").write(cm["data"]["healthscore.toml"])
sys.exit(1 if bad else 0)
PY
# The Kubernetes ConfigMap's service configuration is one healthscore accepts.
# Its token file is a mounted Secret in the pod; here a throw-away one stands in.
printf '%s\n' "check-deploy-token-$(date +%s%N)" >target/k8s-http-token
HEALTHSCORE__HTTP__TOKEN_FILE=target/k8s-http-token "$BIN" check-config --config target/k8s-healthscore.toml >/dev/null
echo "configmap ok: deploy/k8s/configmap.yaml (healthscore check-config)"

# A real scrape: the demo on the mock cluster, /metrics once every partition is ready.
log=$(mktemp)
"$BIN" demo --customers 200 --days 30 --duration 10 --http 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
addr=""
for _ in $(seq 1 100); do
  addr=$(grep -o 'HTTP on http://[0-9.:]*' "$log" | sed 's/HTTP on //' || true)
  if [ -n "$addr" ] && curl -sf "$addr/readyz" >/dev/null; then break; fi
  sleep 0.1
done
[ -n "$addr" ] || { echo "check-deploy: the demo did not serve HTTP:" >&2; cat "$log" >&2; exit 1; }
sleep 2 # a few batches, so the histograms have samples
curl -sf "$addr/metrics" | promtool check metrics
echo "promtool check metrics: ok ($addr/metrics)"
