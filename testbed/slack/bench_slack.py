#!/usr/bin/env python3
"""Benchmark: 50 hosts becoming ready together, announced in Slack by a real `onetouch serve`.

Runs the e2e stack of testbed/e2e (moto + fault front + simulated hosts + MIT realm) with the Slack
test server in strict pacing mode (a second post in a channel within 0.9 s is answered 429), and
prints:
  - the time from the last `ready` (its event in onetouch) to its announcement in Slack,
  - the announcement lag of every host (p50, p90, max),
  - posts per second at peak (the most posts in any 10-second window, and in any 1-second window),
  - chat.update calls per minute, 429s received, and the smallest gap between two posts.

    python3 testbed/slack/bench_slack.py [--hosts 50]      (ONETOUCH_BIN picks the binary)
"""
import argparse
import sys
import tempfile
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_onetouch_slack import fifty_hosts_ready_together, key, threads  # noqa: E402


def epoch(iso):
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--lag", type=float, default=0,
                        help="EC2 visibility lag (s): with 40, every thread is open before the hosts get ready")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="onetouch-slack-bench-") as d:
        stack, hosts, messages, ready_at, stats, posts = fifty_hosts_ready_together(Path(d), args.hosts, args.lag)
        try:
            updates = [r for r in stack.requests("chat.update") if r["status"] == 200]
            _, replies = threads(messages)
            announced = {h["id"]: next(m for m in replies[h["id"]] if key(m).endswith("-ready"))["posted_wall"] for h in hosts}
            ready = {h: epoch(at) for h, at in ready_at.items()}
            last = max(ready, key=ready.get)
            lags = [announced[h] - ready[h] for h in ready]
            ok_posts = sorted(r["at"] for r in posts if r["status"] == 200)
            peak1 = max(sum(1 for t in ok_posts if start <= t < start + 1.0) for start in ok_posts)
            peak10 = max(sum(1 for t in ok_posts if start <= t < start + 10.0) for start in ok_posts) / 10
            first_ready, last_ready = min(ready.values()), max(ready.values())
            ready_posts = sorted(announced.values())
            span = ready_posts[-1] - ready_posts[0]
            print(f"hosts: {args.hosts} (EC2 lag {args.lag:g} s); all ready within {last_ready - first_ready:.1f} s of each other")
            print(f"last ready -> its announcement: {announced[last] - ready[last]:.1f} s")
            print(f"announcement lag: p50 {percentile(lags, 50):.1f} s, p90 {percentile(lags, 90):.1f} s, max {max(lags):.1f} s")
            print(f"posts/s at peak: {peak10:.1f} over any 10 s; at most {peak1} in any 1-s window")
            print(f"ready replies: {len(ready_posts)} over {span:.1f} s = {(len(ready_posts) - 1) / span if span else 0:.2f}/s")
            print(f"all posts: {len(ok_posts)} (parents + replies); smallest gap between posts: {stats['min_gap']:.3f} s; "
                  f"429s from Slack: {stats['rate_limited']}")
            minutes = (max(r["at"] for r in updates) - min(r["at"] for r in updates)) / 60 if len(updates) >= 10 else 0
            print(f"chat.update: {len(updates)}" + (f" ({len(updates) / minutes:.0f}/min)" if minutes else ""))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
