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
from textual.widgets import DataTable, Footer, Header, Log, ProgressBar, Static

from codexd import api
from codexd.errors import BrokenRecord, CodexdError, UnknownTask
from codexd.present import views, vocabulary
from codexd.present.shown import shown
from codexd.tailing import SHOWN_CHARS, tail_lines
from codexd.tasks import store

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


def task_lines(task: dict[str, Any], now: datetime) -> dict[str, Text]:
    """The text of the task view, one entry per part of the screen.

    Text objects, not strings: Textual reads markup in a string, so an agent's `[link=...]`,
    `[@click=...]` or `[/]` would be obeyed. Their control characters are made visible too."""
    progress = task.get("progress") or {}
    items = [vocabulary.item_line(i) for i in progress.get("items") or []]
    last = task.get("last_log") or {}
    recovery = [f"{key} {task[key]}" for key in ("restarts", "stalls", "retries") if task.get(key)]
    facts = Text.assemble(
        f"{shown(str(task.get('type')))}   status ",
        (shown(str(task.get("status"))), "bold"),
        f"   started {task.get('started_at') or '-'}   elapsed {views.elapsed(task, now)}",
    )
    said = {
        "count": views.progress_text(progress),
        "items": "\n".join(items) or "no items finished yet",
        "current": f"current: {progress.get('current')}" if progress.get("current") else "",
        "last": f"last log {last.get('at')}  {last.get('text')}" if last else "no log yet",
        "recovery": "   ".join(recovery),
        "error": f"error: {task['error']}" if task.get("error") else "",
    }
    return {"facts": facts} | {name: Text(shown(text)) for name, text in said.items()}


class ConfirmStop(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Stop it"),
        Binding("n,escape", "answer(False)", "Keep it running"),
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
        Binding("r", "refresh", "Refresh"),
        Binding("l", "logs", "Log"),
        Binding("s", "stop", "Stop task"),
        Binding("escape", "back", "Back"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, tasks: api.Tasks, task_id: str, now: Now):
        super().__init__()
        self.tasks, self.task_id, self.now = tasks, task_id, now
        self._seen: tuple[int, int] | None = None
        self.task_data: dict[str, Any] | None = None  # the status.json shown
        self.title = task_id

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static(id="facts")
            with Horizontal(id="progress-row"):
                yield ProgressBar(show_eta=False, show_percentage=False, id="progress")
                yield Static(id="count")
            yield Static(id="current")
            yield Static(id="items")
            yield Static(id="last")
            yield Static(id="recovery")
            yield Static(id="error")
        yield Footer()

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
        progress = task.get("progress") or {}
        bar = self.query_one(ProgressBar)
        bar.display = bool(progress.get("total"))
        if progress.get("total"):
            bar.update(total=progress["total"], progress=progress.get("completed") or 0)

    def _show_facts(self) -> None:
        if self.task_data is not None:
            self.query_one("#facts", Static).update(task_lines(self.task_data, self.now())["facts"])

    def action_refresh(self) -> None:
        self.show()

    def action_logs(self) -> None:
        self.app.push_screen(LogView(self.tasks, self.task_id, raw=False))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:  # opened from the task list
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
        Binding("e", "toggle_raw", "Raw events / progress log"),
        Binding("escape,l", "back", "Back"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, tasks: api.Tasks, task_id: str, raw: bool):
        super().__init__()
        self.tasks, self.task_id, self.raw = tasks, task_id, raw
        self._following = api.Following(self.path, 0, SHOWN_CHARS)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Log(max_lines=10_000)
        yield Footer()

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
        self._following = api.Following(self.path, store.size_of(self.path), SHOWN_CHARS)
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
        Binding("r", "refresh", "Refresh"),
        Binding("q", "app.quit", "Quit"),
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
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*views.TASK_COLUMNS)
        self.show()
        self.set_interval(POLL, self.show)

    def rows(self) -> list[tuple[str, ...]]:
        now = self.now()
        # A broken status file is left out, not logged over the screen.
        return [views.task_row(t, now) for t in self.tasks.list(broken=[])]

    def show(self) -> None:
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

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens the task; Escape there comes back."""
        if event.row_key.value:
            self.app.push_screen(TaskView(self.tasks, event.row_key.value, self.now))


class Dashboard(App[None]):
    TITLE = "codexd"
    CSS = """
    #progress-row { height: 1; margin: 1 0; }
    #progress { width: 52; }
    #progress Bar { width: 50; }
    #count { width: auto; margin-left: 2; }
    #items, #last, #recovery, #current, #error { margin-bottom: 1; }
    #error { color: $error; }
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
