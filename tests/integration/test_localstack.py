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
