import json
import math

import pytest

from engine.record import RunRecord, atomic_write_json, experiment_key, find_completed, iter_records


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


def test_corrupt_record_is_reported_not_skipped(tmp_path):
    _new(tmp_path)
    bad = tmp_path / "runs" / "t" / "o" / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        list(iter_records(tmp_path))


def test_select_by_reports_metric_of_best_validation_row(tmp_path):
    r = _new(tmp_path, metric={"name": "test_ppl", "higher_is_better": False, "select_by": "val_ppl",
                               "select_higher_is_better": False})
    for val, test in ((120.0, 118.0), (95.0, 99.0), (97.0, 90.0)):
        r.log_eval({"val_ppl": val, "test_ppl": test})
    # the best-validation model (val 95) has test ppl 99, although a later row has a lower test ppl
    assert (r.data["best_metric"], r.data["best_select"], r.data["final_metric"]) == (99.0, 95.0, 90.0)
