"""codexd's benchmarks, each figure taken beside its baseline in the same run.

    ./dev bench            # every figure (about 5 minutes)
    ./dev bench --quick    # fewer repetitions and a shorter load window

A shell stand-in plays Codex (bench/fake-codex, bench/ticker, bench/hang-codex), so the
daemon is what is measured. Prints a Markdown table: median, p90 where it is a latency,
the baseline, their ratio, and the goal from issue 7.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
PY = sys.executable
CODEXD = str(Path(PY).with_name("codexd"))
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "codexd-bench"


@dataclass
class Row:
    figure: str
    ours: str
    baseline: str
    ratio: str
    goal: str
    met: bool | None


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def spread(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


def wait_for(check: Callable[[], Any], timeout: float, what: str, step: float = 0.0005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(step)


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - began


# -- a daemon in a folder of its own ---------------------------------------------------------


class World:
    def __init__(self, root: Path, **settings: str):
        self.root = root
        self.tasks, self.spool = root / "tasks", root / "spool"
        (root / "config.toml").write_text("")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CODEXD_")},
            "CODEXD_CONFIG": str(root / "config.toml"),
            "CODEXD_TASKS_DIR": str(self.tasks),
            "CODEXD_SPOOL_DIR": str(self.spool),
            "CODEXD_CODEX__COMMAND": json.dumps([str(BENCH / "fake-codex")]),
            "CODEXD_MAX_PARALLEL": "8",
            "CODEXD_CODEX__ENV": '["BENCH_CODEX_SECONDS", "BENCH_FLOOD_MB"]',  # the fakes' knobs
            "CODEXD_DAEMON__LOG_LEVEL": "info",
            "XDG_CACHE_HOME": str(root / "cache"),  # the quick commands' cache of the config file
            **settings,
        }
        self.daemon: psutil.Popen | None = None

    def start(self) -> psutil.Popen:
        log = (self.root / "daemon.log").open("ab")
        self.daemon = psutil.Popen([CODEXD, "daemon"], env=self.env, stdout=log, stderr=log)
        wait_for(lambda: "daemon.started" in self.log(), 60, "the daemon to start", step=0.01)
        return self.daemon

    def log(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(60)
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("CODEXD_TASK_DIR", "").startswith(str(self.root)):
                    proc.kill()
            except psutil.Error:
                continue

    def status(self, task_id: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.tasks / task_id / "status.json").read_bytes())
        except (OSError, ValueError):
            return None
        return data


@contextmanager
def world(**settings: str) -> Iterator[World]:
    with tempfile.TemporaryDirectory(prefix="codexd-bench-") as folder:
        w = World(Path(folder), **settings)
        try:
            yield w
        finally:
            w.stop()


def stamp(path: Path, timeout: float = 30) -> float:
    return float(wait_for(lambda: path.exists() and path.read_text().strip(), timeout, str(path)))


def drop(spool: Path, name: str, text: str = "Do it.\n") -> float:
    """Write a task file beside the spool's watch, then rename it in; returns the rename time."""
    hidden = spool / f".{name}.tmp"
    hidden.write_text(text)
    began = time.time()
    os.rename(hidden, spool / name)
    return began


# -- the figures -----------------------------------------------------------------------------


def record(task_id: str) -> dict[str, Any]:
    """The least a status.json needs to be a task record."""
    return {"task_id": task_id, "status": "completed", "created_at": "2025-10-31T12:00:00Z"}


def quick_figures(reps: int) -> list[Row]:
    """The quick commands against `python -c pass`, as users run them: the config file names the
    folders (no CODEXD_* variables), and it was written a while ago, not just now."""
    with world() as w:
        env = {k: v for k, v in w.env.items() if k not in ("CODEXD_TASKS_DIR", "CODEXD_SPOOL_DIR")}
        (w.root / "config.toml").write_text(
            f'tasks_dir = "{w.tasks}"\nspool_dir = "{w.spool}"\nmax_parallel = 4\n\n[notify]\nurls = []\n'
        )
        make_tasks(w.tasks, 20)
        (w.tasks / "old-00000" / "progress.log").write_text("2025-10-31T12:00:00Z a line\n" * 100)
        time.sleep(2.1)  # a config file being edited right now is parsed each time (config/paths.py)
        commands = {
            "`codexd status ID --json`": [CODEXD, "status", "old-00000", "--json"],
            "`codexd logs ID -n 20`": [CODEXD, "logs", "old-00000", "-n", "20"],
            "`codexd list --json` (20 tasks)": [CODEXD, "list", "--json"],
        }
        ours: dict[str, list[float]] = {name: [] for name in commands}
        bare = []
        for _ in range(reps):  # interleaved, so all see the same machine
            for name, argv in commands.items():
                ours[name].append(timed(argv, env))
            bare.append(timed([PY, "-c", "pass"], env))
    return [
        timing_row(
            f"{name} / `python -c pass`, a config file that sets tasks_dir",
            times,
            bare,
            "≤ 1.5x (supervisorctl: 2.6x)",
            lambda o, b: o / b <= 1.5,
        )
        for name, times in ours.items()
    ]


@contextmanager
def bare_watcher(root: Path) -> Iterator[tuple[Path, Path]]:
    spool, out = root / "bare-spool", root / "bare-out"
    spool.mkdir()
    out.mkdir()
    proc = subprocess.Popen(
        [PY, str(BENCH / "bare_watcher.py"), str(spool), str(out), str(BENCH / "fake-codex")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    try:
        yield spool, out
    finally:
        proc.kill()
        proc.wait()


def intake_figures(reps: int) -> list[Row]:
    """Spool rename and `codexd start` to Codex started; Codex exited to status completed."""
    spool_ms, start_ms, exit_ms, bare_spool, bare_start, bare_exit = [], [], [], [], [], []
    with world(CODEXD_MAX_PARALLEL="64") as w:
        w.start()
        with bare_watcher(w.root) as (bspool, bout):
            for i in range(reps):
                began = drop(w.spool, f"r{i}.md")
                spool_ms.append(stamp(w.tasks / f"r{i}" / "bench.started") - began)
                began = drop(bspool, f"r{i}.md")
                bare_spool.append(stamp(bout / f"r{i}" / "bench.started") - began)
                note = w.root / "note.md"
                note.write_text("Do it.\n")
                subprocess.run(
                    [CODEXD, "start", "--instructions", str(note), "--task-id", f"s{i}"],
                    env=w.env,
                    stdout=subprocess.DEVNULL,
                    check=True,
                )
                returned = time.time()
                start_ms.append(stamp(w.tasks / f"s{i}" / "bench.started") - returned)
                note.rename(w.root / "to-move.md")
                subprocess.run(["mv", str(w.root / "to-move.md"), str(bspool / f"s{i}.md")], check=True)
                returned = time.time()
                bare_start.append(stamp(bout / f"s{i}" / "bench.started") - returned)
            for i in range(reps):
                exit_ms.append(completed_after_exit(w, f"r{i}"))
        bare_exit = popen_wait_floor(w.root, reps)
    return [
        latency_row("spool rename → Codex process started", spool_ms, bare_spool, "p50 ≤ 50 ms", 0.050),
        latency_row(
            "`codexd start` returned → Codex process started", start_ms, bare_start, "p50 ≤ 50 ms", 0.050
        ),
        latency_row("Codex exited → status.json says completed", exit_ms, bare_exit, "p50 ≤ 100 ms", 0.100),
    ]


def completed_after_exit(w: World, task_id: str) -> float:
    exited = stamp(w.tasks / task_id / "bench.exited")
    wait_for(lambda: (s := w.status(task_id)) and s["status"] == "completed", 30, f"{task_id} completed")
    # status.json's mtime is when the daemon wrote "completed" (nothing writes it after that)
    return (w.tasks / task_id / "status.json").stat().st_mtime - exited


def popen_wait_floor(root: Path, reps: int) -> list[float]:
    """Baseline: a parent blocked in wait() on the same stand-in, noticing its exit."""
    found = []
    for i in range(reps):
        task = root / f"wait-{i}"
        task.mkdir()
        child = subprocess.Popen(
            [str(BENCH / "fake-codex")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "CODEXD_TASK_DIR": str(task)},
        )
        child.wait()
        noticed = time.time()
        found.append(noticed - stamp(task / "bench.exited"))
    return found


def latency_row(figure: str, ours: list[float], bare: list[float], goal: str, limit: float) -> Row:
    return timing_row(figure, ours, bare, goal, lambda o, b: o <= limit)


def timing_row(
    figure: str,
    ours: list[float],
    bare: list[float],
    goal: str,
    met: Callable[[float, float], bool],
    baseline: str = "",
) -> Row:
    """Medians and p90s of codexd and its baseline; `met` judges the two medians."""
    (o, o90), (b, b90) = spread(ours), spread(bare)
    ratio = f"{o / b:.2f}x" if b > 0 and o > 0 else "-"  # Codex can start before `start` returns
    shown = f"{ms(b)} (p90 {ms(b90)})" + (f" ({baseline})" if baseline else "")
    return Row(figure, f"{ms(o)} (p90 {ms(o90)})", shown, ratio, goal, met(o, b))


def stall_figure(count: int) -> Row:
    with world(
        CODEXD_CODEX__COMMAND=json.dumps([str(BENCH / "hang-codex")]),
        CODEXD_HEALTH__STALL_TIMEOUT="1",
        CODEXD_HEALTH__MAX_RESTARTS="0",
        CODEXD_MAX_PARALLEL=str(count),
    ) as w:
        w.start()
        for i in range(count):
            drop(w.spool, f"h{i}.md")
        wait_for(lambda: w.log().count('"task.stalled"') >= count, 60, "the stalls", step=0.05)
        late = [json.loads(line)["late_by"] for line in w.log().splitlines() if '"task.stalled"' in line]
    m, p90 = spread(late)
    return Row(
        "stall deadline → stall flagged",
        f"{ms(m)} (p90 {ms(p90)})",
        "300 s (the 5-minute health sweep alone)",
        f"{m / 300:.5f}x",
        "≤ 5 s",
        p90 <= 5,
    )


def make_tasks(tasks: Path, count: int) -> None:
    """`count` finished tasks, as the daemon writes them."""
    tasks.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        folder = tasks / f"old-{i:05d}"
        folder.mkdir()
        status = {
            "task_id": folder.name,
            "type": "generic",
            "status": "completed",
            "created_at": f"2025-10-{1 + i % 28:02d}T12:00:00Z",
            "updated_at": "2025-10-31T12:00:00Z",
            "started_at": "2025-10-31T12:00:00Z",
            "finished_at": "2025-10-31T12:01:00Z",
            "progress": {"total": 19, "completed": 19, "percentage": 100.0, "current": None, "items": []},
            "results": {"approved": 15, "changes_requested": 3, "commented": 1},
            "pid": None,
            "log_file": str(folder / "progress.log"),
            "restarts": 0,
            "error": None,
            "daemon": {"accepted_ns": i},
        }
        (folder / "status.json").write_text(json.dumps(status, indent=2) + "\n")


def bulk_intake(existing: int, count: int) -> float:
    with world(CODEXD_MAX_PARALLEL="1") as w:
        make_tasks(w.tasks, existing)
        w.spool.mkdir(mode=0o700)
        for i in range(count):
            (w.spool / f".b{i}.md.tmp").write_text("Do it.\n")
        w.start()
        # Steady state: the start-up health check reads every task once; let it finish first.
        wait_for(lambda: "health.checked" in w.log(), 120, "the start-up health check", step=0.01)
        began = time.monotonic()
        for i in range(count):
            os.rename(w.spool / f".b{i}.md.tmp", w.spool / f"b{i}.md")
        wait_for(
            lambda: (
                all((w.tasks / f"b{i}" / "status.json").exists() for i in range(count - 1, -1, -97))
                and sum(1 for p in w.tasks.glob("b*/status.json")) == count
            ),
            120,
            "the bulk intake",
            step=0.01,
        )
        return time.monotonic() - began


def bulk_floor(count: int) -> float:
    """Baseline: claim each file by rename and write a status file atomically with fsync."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i in range(count):
            (root / f"b{i}.md").write_text("Do it.\n")
        began = time.monotonic()
        for i in range(count):
            task = root / f"t{i}"
            task.mkdir()
            os.rename(root / f"b{i}.md", task / "instructions.md")
            tmp = task / ".status.json.tmp"
            with tmp.open("w") as f:
                f.write(json.dumps({"task_id": f"t{i}", "status": "queued"}))
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, task / "status.json")
        return time.monotonic() - began


def bulk_figures(count: int, existing: list[int]) -> list[Row]:
    """Intake of `count` files into an empty tasks folder, and into ones that hold `existing`."""
    empty, floor = bulk_intake(0, count), bulk_floor(count)
    per_empty = empty / count
    return [
        Row(
            f"{count} tasks dropped at once → all accepted",
            f"{empty:.2f} s",
            f"{floor:.2f} s (rename + fsync'd write)",
            f"{empty / floor:.1f}x",
            "≤ 5 s",
            empty <= 5,
        ),
        *(intake_row(n, bulk_intake(n, count) / count, per_empty) for n in existing),
    ]


def intake_row(existing: int, per_full: float, per_empty: float) -> Row:
    return Row(
        f"per-task intake cost with {existing} tasks existing / with 0",
        f"{per_full * 1000:.2f} ms",
        f"{per_empty * 1000:.2f} ms",
        f"{per_full / per_empty:.2f}x",
        "≤ 1.5x",
        per_full / per_empty <= 1.5,
    )


def list_figure(existing: int, reps: int) -> Row:
    with world() as w:
        make_tasks(w.tasks, existing)
        floor_code = (
            "import json,os,sys;r=sys.argv[1];"
            "[json.loads(open(os.path.join(r,d,'status.json'),'rb').read()) for d in os.listdir(r)]"
        )
        ours = [timed([CODEXD, "list", "--json"], w.env) for _ in range(reps)]
        bare = [timed([PY, "-c", floor_code, str(w.tasks)], w.env) for _ in range(reps)]
    limit = 0.05 + 0.025 * existing / 1000  # 300 ms at 10,000, and no worse than linear
    return timing_row(
        f"`codexd list --json` with {existing} tasks",
        ours,
        bare,
        f"≤ {limit * 1000:.0f} ms (50 ms + 25 ms per 1000)",
        lambda o, b: o <= limit,
        "read and parse every status.json",
    )


def logs_figure(reps: int) -> Row:
    with world() as w:
        folder = w.tasks / "big"
        folder.mkdir(parents=True)
        (folder / "status.json").write_text(json.dumps(record("big"), indent=2) + "\n")
        log = folder / "progress.log"
        line = b"2025-10-31T12:00:00Z Running: gh pr diff 602 -- a line of a long progress log\n"
        chunk = line * (8 * 1024 * 1024 // len(line))
        with log.open("wb") as f:
            while f.tell() < 1 << 30:
                f.write(chunk)
        ours = [timed([CODEXD, "logs", "big", "-n", "20"], w.env) for _ in range(reps)]
        bare = [timed(["tail", "-n", "20", str(log)]) for _ in range(reps)]
    figure = "`codexd logs ID -n 20` on a 1 GB progress.log"
    return timing_row(figure, ours, bare, "≤ 50 ms", lambda o, b: o <= 0.05, "`tail -n 20`")


# -- any amount of output: huge lines and floods ---------------------------------------------


def huge_line_figures(reps: int) -> list[Row]:
    """`logs --raw -n 2` on a 100 MB event line, and the reason read from a 40 MB stderr line."""
    from codexd import tailing

    with world() as w:
        folder = w.tasks / "big"
        folder.mkdir(parents=True)
        (folder / "status.json").write_text(json.dumps(record("big")) + "\n")
        events = folder / "events.jsonl"
        with events.open("wb") as f:
            f.write(b'{"type":"item.completed","item":{"type":"command_execution","aggregated_output":"')
            f.write(b"y" * (100 << 20) + b'"}}\n{"type":"turn.completed"}\n')
        ours = [timed([CODEXD, "logs", "big", "--raw", "-n", "2"], w.env) for _ in range(reps)]
        bare = [timed(["tail", "-n", "2", str(events)]) for _ in range(reps)]
        stderr = folder / "stderr.log"
        stderr.write_bytes(b"y" * (40 << 20) + b"\nerror: boom\n")
        reason = []
        for _ in range(reps):
            began = time.perf_counter()
            tailing.tail_lines(stderr, 5, max_bytes=tailing.REASON_BYTES)
            reason.append(time.perf_counter() - began)
        tail_c = [timed(["tail", "-c", str(tailing.REASON_BYTES), str(stderr)]) for _ in range(reps)]
    return [
        timing_row(
            "`codexd logs ID --raw -n 2` on a 100 MB event line",
            ours,
            bare,
            "≤ 1 s",
            lambda o, b: o <= 1.0,
            "`tail -n 2`",
        ),
        timing_row(
            "the failure reason from a 40 MB stderr line (in the loop)",
            reason,
            tail_c,
            "≤ 10 ms",
            lambda o, b: o <= 0.01,
            "`tail -c 16384`, a process",
        ),
    ]


def flood_figures(megabytes: int) -> list[Row]:
    """A short task submitted while another floods `megabytes` MB of short events."""
    quiet = flood_run()
    command = json.dumps([str(BENCH / "flood-codex")])
    with world(CODEXD_CODEX__COMMAND=command, BENCH_FLOOD_MB=str(megabytes), BENCH_CODEX_SECONDS="1") as w:
        daemon = w.start()
        w.spool.mkdir(exist_ok=True)
        drop(w.spool, "flood.md")
        events = w.tasks / "flood" / "events.jsonl"
        wait_for(lambda: events.exists() and events.stat().st_size > megabytes << 19, 60, "the flood")
        peak, latency = flood_latency(w, daemon, "flood")
    return [
        Row(
            f"a 1 s task, submitted to ended, while another floods {megabytes} MB of events",
            f"{latency:.2f} s",
            f"{quiet:.2f} s (no flood)",
            f"{latency / quiet:.2f}x",
            "≤ 1 s more",
            latency <= quiet + 1.0,
        ),
        Row(
            f"the daemon's peak memory (RSS) under that flood of {megabytes} MB",
            f"{peak / 1e6:.0f} MB",
            "-",
            "-",
            "≤ 300 MB",
            peak <= 300e6,
        ),
    ]


def flood_run() -> float:
    with world(BENCH_CODEX_SECONDS="1") as w:
        daemon = w.start()
        w.spool.mkdir(exist_ok=True)
        return flood_latency(w, daemon, None)[1]


def flood_latency(w: World, daemon: psutil.Popen, flooding: str | None) -> tuple[int, float]:
    """Peak RSS of the daemon until every task ended, and a 1 s task's time to end."""
    began = drop(w.spool, "second.md")
    peak = 0
    names = ["second"] + ([flooding] if flooding else [])
    ended: dict[str, float] = {}
    deadline = time.monotonic() + 300
    while len(ended) < len(names) and time.monotonic() < deadline:
        peak = max(peak, daemon.memory_info().rss)
        for name in names:
            status = w.status(name)
            if name not in ended and status and status["status"] in ("completed", "failed"):
                ended[name] = time.time()
        time.sleep(0.05)
    if len(ended) < len(names):
        raise SystemExit("bench: the flood did not end in 5 minutes")
    return peak, ended["second"] - began


# -- 200 tasks under supervision, and supervisord with the same 200 processes ------------------


def usage(proc: psutil.Process, seconds: float) -> tuple[float, float]:
    """Share of one core used over `seconds`, and the resident memory at the end (MB)."""
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    busy = (after.user + after.system) - (before.user + before.system)
    return busy / seconds, proc.memory_info().rss / 1e6


def supervisord() -> Path:
    venv = CACHE / "supervisor-venv"
    if not (venv / "bin" / "supervisord").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "supervisor==4.2.5"], check=True)
    return venv / "bin" / "supervisord"


def load_curve(counts: list[int], window: float) -> list[Row]:
    """Daemon CPU and RSS with N tasks each printing an event a second, beside supervisord with
    the same N processes, for each N; then the memory each running task adds."""
    rows, points = [], []
    for count in counts:
        ours_cpu, ours_mb = load_usage(count, window)
        bare_cpu, bare_mb = supervisord_usage(count, window)
        points.append((count, ours_mb, bare_mb))
        limit = 0.02 * max(1.0, count / 200)  # the goal at 200 tasks, and no worse than linear above
        rows.append(
            Row(
                f"daemon CPU and RSS, {count} tasks printing 1 event/s",
                f"{ours_cpu * 100:.2f}% of a core, {ours_mb:.0f} MB",
                f"supervisord, same {count} processes: {bare_cpu * 100:.2f}%, {bare_mb:.0f} MB",
                f"{ours_cpu / bare_cpu:.0f}x CPU, {ours_mb / bare_mb:.2f}x RSS" if bare_cpu else "-",
                f"≤ {limit * 100:g}% of a core, ≤ {100 * max(1.0, count / 200):g} MB",
                ours_cpu <= limit and ours_mb <= 100 * max(1.0, count / 200),
            )
        )
    (few, few_mb, few_bare), (many, many_mb, many_bare) = points[0], points[-1]
    per_task = (many_mb - few_mb) / (many - few) * 1000
    per_bare = (many_bare - few_bare) / (many - few) * 1000
    rows.append(
        Row(
            f"memory per running task (RSS at {many} tasks less at {few}, per task)",
            f"{per_task:.0f} KB",
            f"supervisord: {per_bare:.0f} KB",
            f"{per_task / per_bare:.1f}x" if per_bare > 0 else "-",
            "≤ 250 KB (100 MB at 200 tasks)",
            per_task <= 250,
        )
    )
    return rows


def load_usage(count: int, window: float) -> tuple[float, float]:
    with world(
        CODEXD_CODEX__COMMAND=json.dumps([str(BENCH / "ticker")]), CODEXD_MAX_PARALLEL=str(count)
    ) as w:
        daemon = w.start()
        for i in range(count):
            drop(w.spool, f"tick{i}.md")
        wait_for(
            lambda: sum(1 for i in range(count) if (s := w.status(f"tick{i}")) and s.get("pid")) == count,
            120 + count,
            "all tickers running",
            step=0.1,
        )
        time.sleep(3)
        return usage(daemon, window)


def supervisord_usage(count: int, window: float) -> tuple[float, float]:
    program = supervisord()
    with tempfile.TemporaryDirectory(prefix="codexd-bench-sup-") as folder:
        root = Path(folder)
        (root / "supervisord.conf").write_text(
            f"[supervisord]\nnodaemon=true\nminfds=8192\nlogfile={root}/supervisord.log\npidfile={root}/s.pid\n"
            f"[program:tick]\ncommand={BENCH / 'ticker'}\nprocess_name=%(program_name)s_%(process_num)03d\n"
            f"numprocs={count}\nstdout_logfile={root}/%(program_name)s_%(process_num)03d.log\n"
            "redirect_stderr=true\nautorestart=true\nstartsecs=0\n"
        )
        proc = psutil.Popen([str(program), "-c", str(root / "supervisord.conf")], stdout=subprocess.DEVNULL)
        try:
            wait_for(lambda: len(proc.children()) >= count, 120, "supervisord's processes", step=0.1)
            time.sleep(3)
            return usage(proc, window)
        finally:
            proc.terminate()
            proc.wait(60)


def machine() -> str:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    system = f"{platform.system()} {platform.release()}"
    return f"{system}, {os.cpu_count()} cores {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, a shorter load window")
    args = parser.parse_args()
    reps = 10 if args.quick else 30
    sizes = [1000, 10_000, 50_000]
    # Installed packages have their bytecode compiled; a checkout run with PYTHONDONTWRITEBYTECODE
    # would compile every module at every start and measure the compiler.
    subprocess.run([PY, "-m", "compileall", "-q", str(BENCH.parent / "codexd")], check=True)
    print(f"machine: {machine()}", flush=True)
    figures: list[Callable[[], list[Row]]] = [
        lambda: quick_figures(reps * 4),  # short commands: many runs to see past the noise
        lambda: intake_figures(reps),
        lambda: [stall_figure(10)],
        lambda: bulk_figures(1000, [10_000] if args.quick else [10_000, 50_000]),
        lambda: [list_figure(n, max(3, reps // 5)) for n in ([1000, 10_000] if args.quick else sizes)],
        lambda: [logs_figure(reps)],
        lambda: huge_line_figures(max(3, reps // 5)),
        lambda: flood_figures(200),
        lambda: load_curve([10, 50, 200] if args.quick else [10, 50, 200, 500], 10 if args.quick else 30),
    ]
    rows: list[Row] = []
    print("| figure | codexd | baseline | ratio | goal | met |\n|---|---|---|---|---|---|", flush=True)
    for figure in figures:
        for row in figure():
            rows.append(row)
            met = "yes" if row.met else "no"
            print(
                f"| {row.figure} | {row.ours} | {row.baseline} | {row.ratio} | {row.goal} | {met} |",
                flush=True,
            )
    missed = [r.figure for r in rows if r.met is False]
    print(
        f"\n{len(rows) - len(missed)} of {len(rows)} goals met"
        + (f"; missed: {'; '.join(missed)}" if missed else "")
    )
    if shutil.which("git"):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH, check=False
        )
        print(f"commit: {commit.stdout.strip()}")


if __name__ == "__main__":
    main()
