"""The test server itself: it starts, answers, and gives each test a database of its own."""

from __future__ import annotations

from tests.queue.conftest import Postgres


def test_each_test_has_a_database_of_its_own(postgres: Postgres) -> None:
    import psycopg

    first, second = postgres.new_database(), postgres.new_database()
    assert first != second
    with psycopg.connect(first) as conn:
        row = conn.execute("select current_database(), current_user").fetchone()
    assert row is not None and row[1] == "codexd"
