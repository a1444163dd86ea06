"""Isolation of storage and of a child's temp files.

Storage keys are built only from validated ids: a crafted id in a submit or a queue message,
or a crafted key in a row, cannot reach outside the storage root. And whatever way a child
ends (success, a failed record, an exception, os._exit, SIGKILL), its temp dir is gone
afterwards. The child-end tests run this module as the stage's handler: the parent passes the
handler's module name to the child by value, so patching the parent's table is enough."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import uuid
from pathlib import Path

import pytest

from shared.adapters.aws import LocalStorage
from shared.keys import original_key, page_key
from shared.models import FileStatus
from shared.runtime import supervisor as supervisor_module
from shared.runtime.supervisor import Supervisor
from shared.submit import submit

P, F = uuid.uuid4(), uuid.uuid4()
CRAFTED_IDS = ["../../etc/passwd", f"{P}/../../x", f"../{P}", "/etc/passwd", f"{P}\x00", "..", "", "%2e%2e%2fx",
               f"{P}/", " ../x"]


# --- keys and the local storage root --------------------------------------------------


@pytest.mark.parametrize("crafted", CRAFTED_IDS)
def test_a_crafted_id_never_becomes_a_key(crafted):
    with pytest.raises(ValueError):
        original_key(crafted, F, "pdf")
    with pytest.raises(ValueError):
        original_key(P, crafted, "pdf")
    with pytest.raises(ValueError):
        page_key(crafted, F, 1)
    with pytest.raises(ValueError):
        page_key(P, crafted, 1)


@pytest.mark.parametrize("page", ["../1", "1/../../x", -1, 0, "1e3", None])
def test_a_crafted_page_number_never_becomes_a_key(page):
    with pytest.raises((ValueError, TypeError)):
        page_key(P, F, page)


def test_keys_are_canonical_whatever_the_spelling_of_an_id():
    # Braced, URN and upper-case spellings all land on one canonical key: no aliasing.
    for spelling in (f"{{{F}}}", f"urn:uuid:{F}", str(F).upper(), F.hex):
        assert original_key(str(P).upper(), spelling, "pdf") == f"originals/{P}/{F}/original.pdf"
        assert page_key(P, spelling, 3) == f"processed/{P}/{F}/page-0003.jpg"


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "originals/../../outside", "a/../../outside",
                                 "originals/x/../../../outside"])
def test_local_storage_refuses_keys_that_leave_its_root(tmp_path, key):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").write_bytes(b"secret")
    storage = LocalStorage(root)
    with pytest.raises(ValueError):
        storage.download(key, tmp_path / "copy")
    with pytest.raises(ValueError):
        storage.put_bytes(key, b"x", "text/plain")
    assert (tmp_path / "outside").read_bytes() == b"secret" and not (tmp_path / "copy").exists()


def test_local_storage_refuses_a_symlink_out_of_its_root(tmp_path):
    root = tmp_path / "root"
    (root / "originals").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "originals" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ValueError):
        LocalStorage(root).put_bytes("originals/link/original.pdf", b"x", "application/pdf")
    assert list((tmp_path / "elsewhere").iterdir()) == []


# --- submit and messages on the real stack, with local storage ---------------------------


@pytest.fixture
def local_deps(stack_settings, tmp_path):
    """The stack's queues and database with LocalStorage under tmp_path/root/storage."""
    from shared.bootstrap import build_deps, install
    from shared.submit import provision

    settings = stack_settings.model_copy(update={
        "storage_backend": "local", "local_storage_dir": tmp_path / "root" / "storage",
        "worker_tmp_dir": tmp_path / "work", "max_receive_count": 2,
    })
    (tmp_path / "work").mkdir()
    deps = build_deps(settings)
    provision(deps)
    install(deps)
    yield deps
    install(None)
    deps.db.close()


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


@pytest.mark.parametrize("which", ["patient", "file"])
def test_submit_with_a_crafted_id_writes_nothing(local_deps, samples_dir, tmp_path, which):
    crafted = "../../../outside"
    ids = {"patient_id": crafted, "shell_file_id": None} if which == "patient" else {
        "patient_id": uuid.uuid4(), "shell_file_id": crafted}
    with pytest.raises(ValueError):
        submit(local_deps, samples_dir / "two_visits.pdf", **ids)
    assert _tree(tmp_path / "root") == set()
    assert local_deps.queue.depth("preprocess") == (0, 0)


def test_a_hostile_file_name_never_reaches_a_key(local_deps, samples_dir, tmp_path):
    hostile = tmp_path / "..%2F..%2Fetc passwd;rm -rf ~.pdf"
    hostile.write_bytes((samples_dir / "two_visits.pdf").read_bytes())
    patient = uuid.uuid4()
    sfid = submit(local_deps, hostile, patient)
    row = local_deps.db.get_shell_file(sfid)
    assert row.storage_key == f"originals/{patient}/{sfid}/original.pdf"
    assert _tree(tmp_path / "root" / "storage") == {
        "originals", f"originals/{patient}", f"originals/{patient}/{sfid}", f"originals/{patient}/{sfid}/original.pdf"}


def test_crafted_messages_are_rejected_and_touch_nothing(local_deps, samples_dir, tmp_path):
    """Given messages whose ids try to leave the storage root, when the worker serves them,
    then each is acknowledged as an invalid message, nothing is written outside the root and
    nothing lands in a DLQ."""
    real = submit(local_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    before = _tree(tmp_path / "root")
    bodies = {
        "preprocess": [
            {"shell_file_id": "../../../../outside"},
            {"shell_file_id": f"{real}/../../../outside"},
            {"shell_file_id": str(real), "storage_key": "../../outside"},  # unknown fields are refused
            {"shell_file_id": str(real), "patient_id": "../../x"},
            "not json at all",
        ],
        "ocr": [
            {"shell_file_id": str(real), "page_numbers": ["../1"]},
            {"shell_file_id": str(real), "page_numbers": [0]},
            {"shell_file_id": "/etc/passwd", "page_numbers": [1]},
        ],
        "discover": [{"shell_file_id": "..\\..\\outside"}],
    }
    sent = []
    # The real file's own preprocess message goes first; receive it out of the way.
    local_deps.queue.delete("preprocess", local_deps.queue.receive("preprocess")[0].receipt_handle)
    for queue, items in bodies.items():
        for body in items:
            sent.append(local_deps.queue.send_raw(queue, body if isinstance(body, str) else json.dumps(body)))
    finished = Supervisor(local_deps.settings, local_deps.queue, concurrency=2).run(burst=True)

    assert sorted(f.message_id for f in finished) == sorted(sent)
    assert all(f.outcome == "succeeded" for f in finished)  # acknowledged: permanent, not retried
    runs = local_deps.db.query("select outcome, error_code from pipeline_runs where message_id = any(%s)", (sent,))
    assert len(runs) == len(sent) and {(r["outcome"], r["error_code"]) for r in runs} == {("failed", "invalid_message")}
    assert _tree(tmp_path / "root") == before
    assert not (tmp_path / "outside").exists() and list((tmp_path / "work").iterdir()) == []
    for queue in ("preprocess", "ocr", "discover", "preprocess-dlq", "ocr-dlq", "discover-dlq"):
        assert local_deps.queue.depth(queue) == (0, 0), queue
    assert local_deps.db.pages(real) == []


def test_a_row_with_a_crafted_storage_key_cannot_read_outside_the_root(local_deps, samples_dir, tmp_path):
    """A row whose storage_key was tampered with to point at a readable document outside the
    storage root: preprocess never reads it, the file ends failed, no page is produced."""
    outside = tmp_path / "outside.pdf"
    outside.write_bytes((samples_dir / "two_visits.pdf").read_bytes())
    sfid = submit(local_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    storage_root = local_deps.settings.local_storage_dir.resolve()
    assert (storage_root / "originals/../../../outside.pdf").resolve() == outside.resolve()  # a real target
    local_deps.db.execute("update shell_files set storage_key = %s where id = %s returning id",
                          ("originals/../../../outside.pdf", sfid))
    Supervisor(local_deps.settings, local_deps.queue).run(burst=True)
    row = local_deps.db.get_shell_file(sfid)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "invalid_storage_key")
    assert local_deps.db.pages(sfid) == []
    assert list((tmp_path / "work").iterdir()) == []


# --- a child's temp dir, however the child ends ------------------------------------------


def lambda_handler(event, context):
    """Stands in for a stage's handler inside the child: leaves temp files where every stage's
    temp files go (tempfile and $TMPDIR point into the child's dir), reports where, then ends
    the way the message asks."""
    record = event["Records"][0]
    body = json.loads(record["body"])
    handle, path = tempfile.mkstemp(suffix=".pdf")
    os.write(handle, b"%PDF-1.7 a page of patient data")
    os.close(handle)
    nested = Path(tempfile.mkdtemp(dir=os.environ["TMPDIR"]))
    (nested / "page-0001.jpg").write_bytes(b"\xff\xd8\xff")
    Path(body["report"]).write_text(json.dumps({"tmpdir": tempfile.gettempdir(), "files": [path, str(nested)]}))
    mode = body["mode"]
    if mode == "raise":
        raise RuntimeError("a handler bug")
    if mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "exit":
        os._exit(1)
    if mode == "record_failed":
        return {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    return {"batchItemFailures": []}


@pytest.mark.parametrize("mode, outcome", [("ok", "succeeded"), ("record_failed", "failed"), ("raise", "failed"),
                                           ("exit", "failed"), ("sigkill", "crashed")])
def test_the_child_temp_dir_is_gone_however_the_child_ends(stack_deps, tmp_path, monkeypatch, mode, outcome):
    monkeypatch.setitem(supervisor_module.STAGE_HANDLERS, "preprocess", __name__)
    work, reports = tmp_path / "work", tmp_path / "reports"
    work.mkdir()
    reports.mkdir()
    report = reports / f"{mode}.json"
    stack_deps.queue.send_raw("preprocess", json.dumps({"shell_file_id": str(uuid.uuid4()), "mode": mode,
                                                        "report": str(report)}))
    settings = stack_deps.settings.model_copy(update={"worker_tmp_dir": work})
    finished = Supervisor(settings, stack_deps.queue, stages=["preprocess"]).run(burst=True, max_messages=1)

    assert [f.outcome for f in finished] == [outcome]
    seen = json.loads(report.read_text())  # the child did leave files, in a dir under the worker's
    assert Path(seen["tmpdir"]).is_relative_to(work) and Path(seen["tmpdir"]) != work
    assert all(Path(p).is_relative_to(seen["tmpdir"]) for p in seen["files"])
    assert not Path(seen["tmpdir"]).exists()
    assert list(work.iterdir()) == []  # the child's dir and the worker's own root
    expected_depth = (0, 0) if outcome == "succeeded" else (0, 1)  # deleted, or released for a retry
    assert stack_deps.queue.depth("preprocess") == expected_depth
