"""The embedded local stack (``shared.runtime.localstack``) against its real servers."""

from __future__ import annotations

import pytest

pytest.importorskip("pgserver")
pytest.importorskip("moto.server")

import psycopg  # noqa: E402

from shared.runtime.localstack import LocalStack  # noqa: E402


def _requested_checkpoints(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.info.server_version >= 170000:
            return conn.execute("select num_requested from pg_stat_checkpointer").fetchone()[0]
        return conn.execute("select checkpoints_req from pg_stat_bgwriter").fetchone()[0]


def test_a_checkpoint_asked_for_early_is_written_then_not_left_to_the_stop(tmp_path) -> None:
    # Given a new stack whose database has a table made since it started (as the migrations are)
    stack = LocalStack(tmp_path, storage="local").start()
    try:
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            conn.execute("create table made_by_a_migration (id int primary key)")
        before = _requested_checkpoints(stack.database_url)

        # When a checkpoint is asked for, and its thread waited for
        stack.checkpoint_soon().join()

        # Then Postgres has checkpointed: what the stop's checkpoint would have synced is on disk
        assert _requested_checkpoints(stack.database_url) == before + 1
    finally:
        stack.stop()


def test_without_a_database_there_is_no_checkpoint_to_ask_for(tmp_path) -> None:
    stack = LocalStack(tmp_path, storage="local", postgres=False)
    assert stack.checkpoint_soon() is None


def test_moto_lists_its_modules_once_per_host_not_on_every_request(tmp_path, monkeypatch) -> None:
    # moto's dispatcher lists its package directory (and stats each entry) to tell a service
    # from a host, twice a request: the parent of `docpipe process`, where moto runs, paid it
    # on every receive, send and delete.
    import moto.backends

    from shared.adapters.aws import SqsQueue

    listed = []
    list_modules = moto.backends.list_of_moto_modules

    def counted():
        listed.append(1)
        return list_modules()

    monkeypatch.setattr(moto.backends, "list_of_moto_modules", counted)
    stack = LocalStack(tmp_path, storage="local", postgres=False).start()
    try:
        queue = SqsQueue("listing", "us-east-1", stack.endpoint_url)
        queue.ensure_queues(visibility_timeout_s=30, max_receive_count=3)
        for _ in range(20):
            assert queue.receive("ocr", max_messages=1, wait_s=0, visibility_s=30) == []
    finally:
        stack.stop()
    # once when the server starts, and at most once for each of the two hosts a request is seen as
    assert len(listed) <= 3


def _tables(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")]


def test_a_new_data_dir_is_a_copy_of_the_empty_cluster_kept_in_the_cache(tmp_path, monkeypatch) -> None:
    from shared.runtime import localstack

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    made, copied = [], []
    make, copy = localstack._make_template, localstack._copy_template
    monkeypatch.setattr(localstack, "_make_template", lambda template: (made.append(template), make(template)))
    monkeypatch.setattr(localstack, "_copy_template", lambda pgdata: copied.append(copy(pgdata)) or copied[-1])

    # Given a first stack on a new data dir, whose database then gets a table (as a run's rows)
    first = LocalStack(tmp_path / "one", storage="local", postgres=True).start()
    try:
        with psycopg.connect(first.database_url, autocommit=True) as conn:
            conn.execute("create table a_patients_rows (id int primary key)")
    finally:
        first.stop()
    assert len(made) == 1 and (made[0] / "PG_VERSION").exists()

    # When a second stack starts on another new data dir
    second = LocalStack(tmp_path / "two", storage="local", postgres=True).start()
    try:
        # Then it serves from a copy of the cached cluster, made once, which holds nothing of
        # the first stack's (the template is made and stopped before any server writes to it)
        assert len(made) == 1 and copied == [True, True]
        assert _tables(second.database_url) == []
    finally:
        second.stop()
    # and the first stack's data dir is its own
    again = LocalStack(tmp_path / "one", storage="local", postgres=True).start()
    try:
        assert _tables(again.database_url) == ["a_patients_rows"]
    finally:
        again.stop()


def test_a_damaged_cached_cluster_is_dropped_and_the_data_dir_made_by_initdb(tmp_path, monkeypatch) -> None:
    from shared.runtime import localstack

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    stack = LocalStack(tmp_path / "one", storage="local").start()
    stack.stop()
    template = localstack._template()
    (template / "global" / "pg_control").unlink()  # no server starts without it

    stack = LocalStack(tmp_path / "two", storage="local").start()
    try:
        assert _tables(stack.database_url) == []
        assert not template.exists()  # the next new data dir makes a good one
    finally:
        stack.stop()


def test_start_without_waiting_then_entering_starts_one_moto_server(tmp_path) -> None:
    # `docpipe process` starts the stack without waiting for Postgres, makes its queues, then
    # enters it (which waits for Postgres): the second start starts nothing again.
    stack = LocalStack(tmp_path, storage="local").start(wait=False)
    try:
        server, port = stack._moto, stack.port
        with stack:
            assert stack._moto is server and stack.port == port
            assert _tables(stack.database_url) == []
    finally:
        stack.stop()
