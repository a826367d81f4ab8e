"""`codexd monitor`: the Textual dashboard, a client of the same API as the CLI.

Screens: all tasks (a live table), one task (status, progress bar, items, current item,
last log line, restarts and stalls), its log (following progress.log, or Codex's raw
events), and a confirmation before a stop. Each screen looks at the task files twice a
second and redraws only when they changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Header, Log, ProgressBar, Static

from codexd import api, tasklogs
from codexd.cli.ratelimits import RateLimitsLine
from codexd.clock import parse_iso
from codexd.errors import BrokenRecord, CodexdError, UnknownTask
from codexd.present import views, vocabulary
from codexd.present.shown import shown
from codexd.tailing import SHOWN_CHARS, tail_lines
from codexd.tasks import store
from codexd.tasks.states import TERMINAL

Now = Callable[[], datetime]
POLL = 0.5  # seconds between looks at the task files: changes show within a second
LOG_LINES = 500  # lines of history a log view starts with


def _stamp(path: Path) -> tuple[int, int] | None:
    """Changes when the file does (atomic writes replace it, appends grow it)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_mtime_ns, info.st_size


def _local(at: str | None, now: datetime | None = None) -> str:
    """An ISO time in the local zone, the day left out when it is `now`'s day."""
    if not at:
        return "-"
    try:
        moment = parse_iso(str(at)).astimezone()
    except ValueError:
        return shown(str(at))
    same_day = now is not None and moment.date() == now.astimezone().date()
    return moment.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")


def _facts(task: dict[str, Any], now: datetime) -> Text:
    """`Status: IN PROGRESS   Started: 2025-10-31 12:50:01   Elapsed: 00:19:59`"""
    return Text.assemble(
        "Status: ",
        (vocabulary.loud(shown(str(task.get("status")))), "bold"),
        f"   Started: {_local(task.get('started_at'))}",
        f"   Elapsed: {views.elapsed(task, now, said=vocabulary.stopwatch)}",
    )


def _loud_state(status: str) -> str:
    """`QUEUED (after codex-a)`: the state in capitals, the ids it names as they are."""
    state, _, held = status.partition(" ")
    return vocabulary.loud(state) + (f" {held}" if held else "")


def _item(item: dict[str, Any]) -> str:
    """`✅ #626 - toml upgrade (APPROVED)`"""
    outcome = str(item.get("outcome") or "done")
    return f"{vocabulary.OUTCOME_ICONS.get(outcome, '•')} {item.get('title')} ({vocabulary.loud(outcome)})"


def task_lines(task: dict[str, Any], now: datetime) -> dict[str, Text]:
    """The text of the task view, one entry per part of the screen (an empty one is hidden).

    Text objects, not strings: Textual reads markup in a string, so an agent's `[link=...]`,
    `[@click=...]` or `[/]` would be obeyed. Their control characters are made visible too."""
    progress = task.get("progress") or {}
    last = task.get("last_log") or {}
    current = progress.get("current") if task.get("status") not in TERMINAL else None
    waiting = task.get("waiting") if isinstance(task.get("waiting"), dict) else None
    doing = f"Current: {current}" if current else ""
    said = {
        "count": views.progress_text(progress),
        "items": "\n".join(map(_item, progress.get("items") or [])) or "nothing finished yet",
        "current": f"Waiting: {waiting.get('reason')}" if waiting else doing,  # the usage limit
        "busy": views.task_busy(task).replace("busy:", "Busy:", 1),  # its silent tree working: not a stall
        "last": f"Last log: [{_local(last.get('at'), now)}] {last.get('text')}" if last else "No log yet",
        "recovery": "   ".join(views.recovery_facts(task)),
        "error": f"Error: {task['error']}" if task.get("error") else "",
        "queue": _queue_line(task),
    }
    return {"facts": _facts(task, now)} | {name: Text(shown(text)) for name, text in said.items()}


def _queue_line(task: dict[str, Any]) -> str:
    """`Waiting for codex-a (in_progress)   After: codex-a   Priority: 5`."""
    waiting = task.get("waiting")
    reason = str(waiting.get("reason") or "") if isinstance(waiting, dict) else ""
    said = "W" + reason[1:] if reason.startswith("waiting ") else f"Waiting: {reason}"
    parts = [said] if reason else []
    parts += [f"{name.capitalize()}: {value}" for name, value in views.order_lines(task)]
    return "   ".join([*parts, f"Branch: {views.branch_of(task)}"] if views.branch_of(task) else parts)


class KeyLine(Static):
    """The keys at the foot of a screen, as the seed shows them: `[R]efresh | [L]ogs | [Q]uit`.
    Each is a link to its action, so a click works as well as the key."""

    def __init__(self, *keys: tuple[str, str]):
        said = ((label.replace("[", "\\["), action) for label, action in keys)  # `[R]` is no tag
        super().__init__(" | ".join(f"[@click={action}]{label}[/]" for label, action in said), classes="keys")


class ConfirmStop(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,Y", "answer(True)", "Stop it"),
        Binding("n,N,escape", "answer(False)", "Keep it running"),
    ]

    def __init__(self, task_id: str):
        super().__init__()
        self.task_id = task_id

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(f"Stop task [b]{self.task_id}[/b]? Its whole process tree ends.")
            yield Static("[b]y[/b] stop it    [b]n[/b] keep it running")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TaskView(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r,R", "refresh", "Refresh"),
        Binding("l,L", "logs", "Logs"),
        Binding("s,S", "stop", "Stop"),
        Binding("escape", "back", "Back"),
        Binding("q,Q", "app.quit", "Quit"),
    ]

    def __init__(self, tasks: api.Tasks, task_id: str, now: Now, from_list: bool = False):
        super().__init__()
        self.tasks, self.task_id, self.now, self.from_list = tasks, task_id, now, from_list
        self._seen: tuple[int, int] | None = None
        self.task_data: dict[str, Any] | None = None  # the status.json shown
        self._finished = 0  # finished items shown
        self.title = task_id

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static(id="facts")
            with Horizontal(id="progress-row"):
                yield Static("Progress:", id="progress-label")
                yield ProgressBar(show_eta=False, show_percentage=False, id="progress")
                yield Static(id="count")
            with Vertical(id="middle"), VerticalScroll(id="items-box"):
                yield Static(id="items")
            yield Static(id="current", classes="line")
            yield Static(id="busy", classes="line")
            yield Static(id="last", classes="line")
            yield Static(id="recovery", classes="line")
            yield Static(id="queue", classes="line")
            yield Static(id="error")
        keys = [("[R]efresh", "screen.refresh"), ("[L]ogs", "screen.logs"), ("[S]top", "screen.stop")]
        back = [("[Esc] Back", "screen.back")] if self.from_list else []
        yield KeyLine(*keys, *back, ("[Q]uit", "app.quit"))

    def on_mount(self) -> None:
        self.show()
        self.set_interval(POLL, self.look)

    def look(self) -> None:
        """Redraw when status.json changed; the elapsed time moves anyway."""
        stamp = _stamp(self.tasks.store.file(self.task_id, store.STATUS))
        if stamp != self._seen:
            self.show()
        else:
            self._show_facts()

    def show(self) -> None:
        self._seen = _stamp(self.tasks.store.file(self.task_id, store.STATUS))
        try:
            task = self.task_data = self.tasks.status_dict(self.task_id)
        except UnknownTask:
            self.query_one("#facts", Static).update("this task is gone")
            return
        except BrokenRecord as exc:
            self.query_one("#facts", Static).update(Text(shown(str(exc))))
            return
        for name, text in task_lines(task, self.now()).items():
            widget = self.query_one(f"#{name}", Static)
            widget.update(text)
            widget.display = bool(text)
        self._draw_progress(task)

    def _draw_progress(self, task: dict[str, Any]) -> None:
        """The bar, and the finished items titled after the type, the newest kept in sight."""
        self.sub_title = shown(str(task.get("type")))
        progress = task.get("progress") or {}
        bar = self.query_one(ProgressBar)
        bar.display = bool(progress.get("total"))
        if progress.get("total"):
            bar.update(total=progress["total"], progress=progress.get("completed") or 0)
        box = self.query_one("#items-box", VerticalScroll)
        box.border_title = vocabulary.completed_heading(str(task.get("type")))
        finished = len(progress.get("items") or [])
        if finished > self._finished:  # a new item: scroll to it (else leave where the user scrolled)
            box.scroll_end(animate=False, on_complete=self._redraw_scroll_bar)
        self._finished = finished

    def _redraw_scroll_bar(self) -> None:
        """Textual 8.2 leaves the bar drawn where it was before `scroll_end`."""
        self.query_one("#items-box", VerticalScroll).vertical_scrollbar.refresh()

    def _show_facts(self) -> None:
        if self.task_data is not None:
            self.query_one("#facts", Static).update(_facts(self.task_data, self.now()))

    def action_refresh(self) -> None:
        self.show()

    def action_logs(self) -> None:
        self.app.push_screen(LogView(self.tasks, self.task_id, raw=False))

    def action_back(self) -> None:
        if self.from_list:
            self.app.pop_screen()

    def action_stop(self) -> None:
        def stop(yes: bool | None) -> None:
            if not yes:
                return
            try:
                before = self.tasks.request_stop(self.task_id)
            except CodexdError as exc:
                self.notify(shown(str(exc)), severity="error", markup=False)
                return
            done = f"already {before.status.value}" if before.is_terminal else "stop requested"
            self.notify(f"{self.task_id}: {done}")

        self.app.push_screen(ConfirmStop(self.task_id), stop)


class LogView(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e,E", "toggle_raw", "Raw events / progress log"),
        Binding("escape,l,L", "back", "Back"),
        Binding("q,Q", "app.quit", "Quit"),
    ]

    def __init__(self, tasks: api.Tasks, task_id: str, raw: bool):
        super().__init__()
        self.tasks, self.task_id, self.raw = tasks, task_id, raw
        self._following = tasklogs.Following(self.path, 0, SHOWN_CHARS)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Log(max_lines=10_000)
        yield KeyLine(
            ("[E] Raw events / progress log", "screen.toggle_raw"),
            ("[L]/[Esc] Back", "screen.back"),
            ("[Q]uit", "app.quit"),
        )

    def on_mount(self) -> None:
        self.load()
        self.set_interval(POLL / 2, self.follow)

    @property
    def path(self) -> Path:
        return self.tasks.store.file(self.task_id, store.EVENTS if self.raw else store.PROGRESS)

    def load(self) -> None:
        """The last lines at once, read from the end; then new lines as they come."""
        self.title = f"{self.task_id}: {'events.jsonl' if self.raw else 'progress.log'}"
        log = self.query_one(Log)
        log.clear()
        self._following = tasklogs.Following(self.path, store.size_of(self.path), SHOWN_CHARS)
        lines = tail_lines(self.path, LOG_LINES, end=self._following.offset, width=SHOWN_CHARS)
        log.write_lines(map(shown, lines))  # raw events may hold C1 and bidi controls

    def follow(self) -> None:
        lines = self._following.new_lines()
        if lines is not None:
            self.query_one(Log).write_lines(map(shown, lines))

    def action_toggle_raw(self) -> None:
        self.raw = not self.raw
        self.load()

    def action_back(self) -> None:
        self.app.pop_screen()


class TaskList(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r,R", "refresh", "Refresh"),
        Binding("q,Q", "app.quit", "Quit"),
    ]

    def __init__(self, tasks: api.Tasks, now: Now):
        super().__init__()
        self.tasks, self.now = tasks, now
        self.title = "codexd: all tasks"
        self.sub_title = "Enter opens a task, Escape comes back"
        self._shown: list[tuple[str, ...]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row", zebra_stripes=True)
        yield RateLimitsLine(self.tasks.root, self.now)
        yield KeyLine(
            ("[Enter] Open", "screen.open"), ("[R]efresh", "screen.refresh"), ("[Q]uit", "app.quit")
        )

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*views.TASK_COLUMNS)
        self.show()
        self.set_interval(POLL, self.show)

    def rows(self) -> list[tuple[str, ...]]:
        now = self.now()
        # A broken status file is left out, not logged over the screen. The status in capitals,
        # as the task view says it.
        rows = [views.task_row(t, now) for t in self.tasks.list(broken=[])]
        return [(task_id, kind, _loud_state(status), *rest) for task_id, kind, status, *rest in rows]

    def show(self) -> None:
        held = self.tasks.usage_limit(self.now())  # the whole queue waits: said above the table
        self.sub_title = f"account: {held.reason}" if held else "Enter opens a task, Escape comes back"
        rows = self.rows()
        if rows == self._shown:
            return
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(*row, key=row[0])
        table.move_cursor(row=min(keep, max(0, len(rows) - 1)))
        self._shown = rows

    def action_refresh(self) -> None:
        self._shown = []
        self.show()

    def action_open(self) -> None:
        self.query_one(DataTable).action_select_cursor()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens the task; Escape there comes back."""
        if event.row_key.value:
            self.app.push_screen(TaskView(self.tasks, event.row_key.value, self.now, from_list=True))


class Dashboard(App[None]):
    TITLE = "codexd"
    CSS = """
    #body { padding: 0 1; }
    #facts { margin: 1 0; }
    #progress-row { height: 1; margin-bottom: 1; }
    #progress-label { width: auto; margin-right: 1; }
    #progress { width: 1fr; max-width: 62; }
    #progress Bar { width: 1fr; }
    #count { width: auto; margin-left: 1; }
    #middle { height: 1fr; margin-bottom: 1; }
    #items-box { height: auto; max-height: 100%; padding: 0 1; }
    #items-box { border: round $primary; border-title-align: left; }
    #items-box:focus { border: round $accent; }
    .line { text-wrap: nowrap; text-overflow: ellipsis; }
    #error { color: $error; max-height: 3; }
    .keys { dock: bottom; height: 1; padding: 0 1; background: $panel; }
    ConfirmStop { align: center middle; }
    #confirm { width: 60; height: auto; border: thick $warning; padding: 1 2; background: $surface; }
    """

    def __init__(
        self, tasks: api.Tasks, task_id: str | None = None, raw: bool = False, now: Now | None = None
    ):
        super().__init__()
        self.tasks, self.task_id, self.raw = tasks, task_id, raw
        self.now: Now = now or (lambda: datetime.now(UTC))

    def on_mount(self) -> None:
        if self.task_id is None:
            self.push_screen(TaskList(self.tasks, self.now))
            return
        self.push_screen(TaskView(self.tasks, self.task_id, self.now))
        if self.raw:
            self.push_screen(LogView(self.tasks, self.task_id, raw=True))
