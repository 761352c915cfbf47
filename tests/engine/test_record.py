import errno
import json
import math
import os
import socket
import subprocess
import sys

import pytest

from engine.record import (
    RecordWarning,
    RunRecord,
    atomic_write_json,
    experiment_key,
    find_completed,
    iter_records,
    owner_alive,
    selection,
)


def _new(tmp_path, **kw):
    fields = dict(task="t", optim="o", seed=0, metric={"name": "acc", "higher_is_better": True}, key="k1")
    fields.update(kw)
    return RunRecord.create(tmp_path, **fields)


def test_record_written_where_documented_and_never_shared(tmp_path):
    a, b = _new(tmp_path), _new(tmp_path)
    assert a.path != b.path
    assert a.path.parent == tmp_path / "runs" / "t" / "o"
    assert json.loads(a.path.read_text())["status"] == "running"
    with pytest.raises(FileExistsError):  # an existing run id is never overwritten by a new run
        RunRecord.create(tmp_path, run_id=a.data["run_id"], task="t", optim="o")


def test_best_and_final_metric_follow_direction(tmp_path):
    up = _new(tmp_path)
    for v in (50.0, 70.0, 60.0):
        up.log_eval({"epoch": 1, "acc": v})
    assert (up.data["best_metric"], up.data["final_metric"]) == (70.0, 60.0)
    down = _new(tmp_path, metric={"name": "ppl", "higher_is_better": False})
    for v in (90.0, 70.0, 80.0):
        down.log_eval({"ppl": v})
    assert (down.data["best_metric"], down.data["final_metric"]) == (70.0, 80.0)


def test_non_finite_values_become_null_and_do_not_count(tmp_path):
    r = _new(tmp_path)
    r.log_eval({"acc": 10.0, "val_loss": math.inf})
    r.log_eval({"acc": math.nan})
    r.finish("diverged", "loss nan")
    data = json.loads(r.path.read_text())  # strict JSON: no NaN tokens
    assert data["history"][0]["val_loss"] is None and data["history"][1]["acc"] is None
    assert data["best_metric"] == 10.0 and data["status"] == "diverged" and data["finished_at"]


def test_finish_rejects_unknown_status(tmp_path):
    with pytest.raises(ValueError, match="status='done'"):
        _new(tmp_path).finish("done")


def test_atomic_write_leaves_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind
    # the record's own writer: same guarantee when the disk fills
    r = _new(tmp_path)
    before = r.path.read_text()
    r.data["history"].append({"x": object()})
    with pytest.raises(TypeError):
        r.save()
    assert r.path.read_text() == before and list(r.path.parent.iterdir()) == [r.path]


def test_find_completed_and_key_stability(tmp_path):
    assert experiment_key({"a": 1, "b": [1, 2]}) == experiment_key({"b": [1, 2], "a": 1})
    assert experiment_key({"a": 1}) != experiment_key({"a": 2})
    assert experiment_key({"lr_scale": 1, "betas": [0.9, 1]}) == experiment_key({"lr_scale": 1.0, "betas": [0.9, 1.0]})
    assert experiment_key({"flag": True}) != experiment_key({"flag": 1})
    r = _new(tmp_path, key="abc")
    assert find_completed(tmp_path, "abc") is None
    r.finish("completed")
    assert find_completed(tmp_path, "abc")["run_id"] == r.data["run_id"]
    assert len(list(iter_records(tmp_path))) == 1


@pytest.mark.parametrize("content,problem", [
    ("", "is empty"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "holds a JSON list"),
    ('{"schema": 3, "run_id": "x", "task": "t", "optim": "o", "status": "completed"}', "has schema 3"),
    ('{"run_id": "x", "task": "t", "optim": "o", "status": "completed"}', "has schema None"),
    ('{"schema": 2, "task": "t"}', "lacks run_id, optim, status"),
])
def test_unreadable_or_foreign_file_is_skipped_with_a_warning_naming_it(tmp_path, content, problem):
    good = _new(tmp_path)
    bad = tmp_path / "runs" / "t" / "o" / "broken.json"
    bad.write_text(content)
    with pytest.warns(RecordWarning, match=f"skipping {bad}: it {problem}"):
        found = list(iter_records(tmp_path))
    assert [r["run_id"] for r in found] == [good.data["run_id"]]  # the readable record is still there
    assert bad.read_text() == content  # skipped, never deleted


def test_schema_1_records_are_still_read(tmp_path):
    _new(tmp_path).finish("completed")
    old = tmp_path / "runs" / "t" / "o" / "old.json"
    old.write_text(json.dumps({"schema": 1, "run_id": "old", "task": "t", "optim": "o", "status": "completed"}))
    assert sorted(r["schema"] for r in iter_records(tmp_path)) == [1, 2]


def test_a_failed_creation_leaves_no_file(tmp_path, monkeypatch):
    """A full disk while the first content is written: no empty record (it blocked every reader before)."""
    import engine.record

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine.record.json, "dump", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _new(tmp_path)
    assert list((tmp_path / "runs" / "t" / "o").iterdir()) == []  # neither the record nor a temporary


def test_created_record_is_complete_and_schema_2(tmp_path):
    r = _new(tmp_path, deviations=["optim.lr=0.3"])
    data = json.loads(r.path.read_text())
    assert data["schema"] == 2 and data["deviations"] == ["optim.lr=0.3"] and data["status"] == "running"
    assert data["owner"]["pid"] == os.getpid() and data["owner"]["host"] == socket.gethostname()
    assert list(r.path.parent.iterdir()) == [r.path]  # the temporary was removed


def test_running_record_of_a_dead_owner_is_stale(tmp_path):
    alive = _new(tmp_path)
    dead = _new(tmp_path)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    dead.data["owner"] = {"host": socket.gethostname(), "pid": p.pid, "pid_start": "1"}
    dead.save()
    finished = _new(tmp_path)
    finished.data["owner"] = dict(dead.data["owner"])
    finished.finish("completed")
    other_host = _new(tmp_path)
    other_host.data["owner"] = {"host": "elsewhere.invalid", "pid": 1, "pid_start": "1"}
    other_host.save()
    stale = {r["run_id"]: r["_stale"] for r in iter_records(tmp_path)}
    assert stale == {alive.data["run_id"]: False, dead.data["run_id"]: True, finished.data["run_id"]: False,
                     other_host.data["run_id"]: False}
    assert owner_alive(alive.data) is True and owner_alive(dead.data) is False and owner_alive(other_host.data) is None


def test_selection_rule():
    assert selection({"name": "acc", "higher_is_better": True}) == ("acc", True)
    assert selection({"name": "test_ppl", "higher_is_better": False, "select_by": "val_ppl"}) == ("val_ppl", False)
    assert selection({"name": "bleu", "higher_is_better": True, "select_by": "val_loss",
                      "select_higher_is_better": False}) == ("val_loss", False)


def test_select_by_reports_metric_of_best_validation_row(tmp_path):
    r = _new(tmp_path, metric={"name": "test_ppl", "higher_is_better": False, "select_by": "val_ppl",
                               "select_higher_is_better": False})
    for val, test in ((120.0, 118.0), (95.0, 99.0), (97.0, 90.0)):
        r.log_eval({"val_ppl": val, "test_ppl": test})
    # the best-validation model (val 95) has test ppl 99, although a later row has a lower test ppl
    assert (r.data["best_metric"], r.data["best_select"], r.data["final_metric"]) == (99.0, 95.0, 90.0)
