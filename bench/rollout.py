"""What following each session's rollout file (live token usage) costs the daemon.

    .venv/bin/python bench/rollout.py [--tasks 50] [--window 20] [--rounds 2]

The same tasks (bench/rollout-ticker: one event a second) run twice, in alternating rounds:
once writing their rollout file with a token_count line a second, as Codex does, once
writing none, so the daemon looks for one at every step and finds nothing. The daemon's CPU
in both is printed with its spread over rounds: the difference is what following costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from run import BENCH, World, drop, machine, usage, wait_for, world


def running(w: World, count: int) -> bool:
    return sum(1 for i in range(count) if (s := w.status(f"tick{i}")) and s.get("pid")) == count


def daemon_cpu(count: int, window: float, followed: bool) -> tuple[float, int]:
    """The daemon's share of a core over `window` with `count` tasks, and the tokens it had
    recorded by then for the first task (proof it followed the rollout)."""
    settings = {
        "CODEXD_CODEX__COMMAND": json.dumps([str(BENCH / "rollout-ticker")]),
        "CODEXD_MAX_PARALLEL": str(count),
        "CODEXD_CODEX__ENV": '["BENCH_NO_ROLLOUT"]',
    }
    with world(**settings) as w:
        w.env["CODEX_HOME"] = str(w.root / "codex-home")
        (w.root / "codex-home" / "sessions").mkdir(parents=True)
        if not followed:
            w.env["BENCH_NO_ROLLOUT"] = "1"
        daemon = w.start()
        for i in range(count):
            drop(w.spool, f"tick{i}.md")
        wait_for(lambda: running(w, count), 120, "all tickers running", step=0.1)
        time.sleep(3)
        cpu, _ = usage(daemon, window)
        tokens = ((w.status("tick0") or {}).get("usage") or {}).get("total_tokens") or 0
    return cpu, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    found: dict[bool, list[float]] = {True: [], False: []}
    tokens = 0
    for _ in range(args.rounds):
        for followed in (True, False):
            cpu, seen = daemon_cpu(args.tasks, args.window, followed)
            found[followed].append(cpu * 100)
            tokens = max(tokens, seen if followed else tokens)
    print(f"Machine: {machine()}; {args.tasks} tasks, 1 event/s, {args.rounds} rounds of {args.window:g} s")
    print("| rollout | daemon CPU, % of a core (each round) | median |")
    print("|---|---|---|")
    for followed, label in ((True, "followed: a token_count line/s each"), (False, "absent: looked for")):
        rounds = ", ".join(f"{v:.2f}" for v in found[followed])
        print(f"| {label} | {rounds} | {statistics.median(found[followed]):.2f} |")
    cost = statistics.median(found[True]) - statistics.median(found[False])
    print(f"Following costs {cost:+.2f} points of a core; a followed task had {tokens} tokens recorded.")


if __name__ == "__main__":
    main()
