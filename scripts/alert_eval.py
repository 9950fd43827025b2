#!/usr/bin/env python3
"""Are the risk alerts worth reading? Volume, precision against chance, and recall, per rule.

    scripts/alert_eval.py EVENTS.ndjson OUTPUT.ndjson [--horizon-days 90] [--json]

EVENTS is the history `replay` read (cancellations are its `subscription_cancelled` events);
OUTPUT is what `replay` wrote. Any history works: nothing here knows one data set.

- volume: risk alerts per customer-month, over the time each customer was scored (from its
  first output to its cancellation or the end of the history);
- precision: the share of risk alerts whose customer cancels within the horizon after the
  alert; chance: the same share for a customer-day drawn at random from the scored ones; lift =
  precision / chance. Alerts (and days) closer than the horizon to the history's end are left
  out: their outcome is not known yet;
- recall: the share of cancellations (of customers scored at least 7 days before) that got a
  risk alert 7 to 90 days before cancelling: early enough to act on, not so early it is noise.
"""
import argparse
import json
import sys
from collections import defaultdict
from datetime import datetime

DAY = 86400.0


def ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events")
    ap.add_argument("output")
    ap.add_argument("--horizon-days", type=float, default=90.0)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    a = ap.parse_args()
    horizon = a.horizon_days * DAY

    cancel = {}
    with open(a.events, "rb") as f:
        for line in f:
            if b"subscription_cancelled" not in line:
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("type") == "subscription_cancelled":
                t = ts(e["timestamp"])
                c = e["customer_id"]
                cancel[c] = min(t, cancel.get(c, t))

    first = {}
    alerts = []  # (customer, time, rule)
    end = 0.0
    with open(a.output, "rb") as f:
        for line in f:
            o = json.loads(line)
            t = ts(o["timestamp"])
            c = o["customer_id"]
            end = max(end, t)
            first.setdefault(c, t)
            if o["type"] == "alert" and o.get("kind") == "risk":
                alerts.append((c, t, o["rule"]))

    def until(c):
        return min(cancel.get(c, end), end)

    # Customer-months scored, and the chance rate over customer-days with a known outcome.
    months = sum(max(0.0, until(c) - t0) for c, t0 in first.items()) / (30 * DAY)
    known_end = end - horizon
    days = churn_days = 0.0
    for c, t0 in first.items():
        stop = min(until(c), known_end)
        if stop <= t0:
            continue
        days += stop - t0
        if c in cancel:
            churn_days += max(0.0, stop - max(t0, cancel[c] - horizon))
    chance = churn_days / days if days else float("nan")

    def figures(subset):
        judged = [(c, t) for c, t, _ in subset if t <= known_end and t < cancel.get(c, float("inf"))]
        hits = sum(1 for c, t in judged if c in cancel and cancel[c] - t <= horizon)
        precision = hits / len(judged) if judged else float("nan")
        warned = set()
        by_customer = defaultdict(list)
        for c, t, _ in subset:
            by_customer[c].append(t)
        judged_churns = [c for c, t in cancel.items() if c in first and t - first[c] >= 7 * DAY]
        for c in judged_churns:
            if any(7 * DAY <= cancel[c] - t <= 90 * DAY for t in by_customer.get(c, ())):
                warned.add(c)
        return {
            "alerts": len(subset),
            "per_customer_month": len(subset) / months if months else float("nan"),
            "precision": precision,
            "lift": precision / chance if chance else float("nan"),
            "recall": len(warned) / len(judged_churns) if judged_churns else float("nan"),
        }

    result = {
        "customers": len(first),
        "customer_months": months,
        "cancellations": len(cancel),
        "chance": chance,
        "all": figures(alerts),
        "rules": {r: figures([x for x in alerts if x[2] == r]) for r in sorted({x[2] for x in alerts})},
    }
    if a.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return
    print(
        f"{result['customers']} customers, {months:.0f} customer-months, {len(cancel)} cancellations; "
        f"chance that a scored customer-day is followed by a cancellation within {a.horizon_days:.0f} days: {chance:.3f}"
    )
    print(f"{'rule':<30} {'alerts':>8} {'per cust-month':>15} {'precision':>10} {'lift':>6} {'recall 7-90d':>13}")
    rows = [("all risk alerts", result["all"])] + list(result["rules"].items())
    for name, r in rows:
        print(
            f"{name:<30} {r['alerts']:>8} {r['per_customer_month']:>15.3f} {r['precision']:>10.3f} "
            f"{r['lift']:>6.2f} {r['recall']:>13.1%}"
        )


if __name__ == "__main__":
    main()
