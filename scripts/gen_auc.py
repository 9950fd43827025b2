#!/usr/bin/env python3
"""Held-out AUC of any replay's scores on a generated history, the way `backtest` judges it.

    scripts/gen_auc.py LABELS.csv REPLAY-OUTPUT.ndjson [--horizon-days 90] [--every-days 7] [--warmup-days 14]

`backtest` re-scores observations with one fixed scorecard; a replay that learns (`replay --learn`)
changes its scorecard as it goes, so its figure must come from the scores it emitted. Observation
dates are backtest's (the end of every 7th UTC day after the first output's day); a customer is
observed once its first score is a warm-up old and until it churns; its score there is the last
`score_changed` at or before the date; the label is churn within the horizon (the labels file is
complete); the report period is the later half of the dates. Prints `held-out=0.xxx`.
"""
import argparse
import csv
import datetime as dt
import json


def millis(s):
    return int(dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def auc(scores, labels):
    pairs = sorted(zip(scores, labels))
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mean_rank = (i + j + 1) / 2
        rank_sum += mean_rank * sum(1 for k in range(i, j) if pairs[k][1])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("labels")
    ap.add_argument("output")
    ap.add_argument("--horizon-days", type=int, default=90)
    ap.add_argument("--every-days", type=int, default=7)
    ap.add_argument("--warmup-days", type=int, default=14)
    a = ap.parse_args()
    day = 86_400_000
    churn = {}
    with open(a.labels) as f:
        for row in csv.DictReader(f):
            churn[row["customer_id"]] = millis(row["churn_date"] + "T00:00:00Z") if len(row["churn_date"]) == 10 else millis(row["churn_date"])
    scores = {}  # customer -> [(t, score)] in time order
    first, last = None, None
    with open(a.output) as f:
        for line in f:
            if '"score_changed"' not in line[:30]:
                continue
            o = json.loads(line)
            t = millis(o["timestamp"])
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
            scores.setdefault(o["customer_id"], []).append((t, o["score"]))
    dates = []
    d = first // day + a.every_days
    while (d + 1) * day - 1 <= last:
        dates.append((d + 1) * day - 1)
        d += a.every_days
    report = dates[len(dates) // 2:]
    horizon, warmup = a.horizon_days * day, a.warmup_days * day
    xs, ys = [], []
    for cid, series in scores.items():
        c = churn.get(cid)
        k = 0
        for at in report:
            if at - series[0][0] < warmup or (c is not None and c <= at):
                continue
            while k + 1 < len(series) and series[k + 1][0] <= at:
                k += 1
            xs.append(-series[k][1])
            ys.append(c is not None and c <= at + horizon)
    r = auc(xs, ys)
    print(f"held-out={r:.3f} observations={len(xs)} churning={sum(ys)}" if r is not None else "held-out=-")


if __name__ == "__main__":
    main()
