"""Typed config: YAML + key=value overrides, unknown keys and wrong types rejected by name."""

import pytest

from moga.config import ExperimentConfig, dump_config, load_config
from supernet import UserError


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("supernet:\n  steps: 7\nsearch:\n  population: 12\n")
    cfg = load_config(path, ["supernet.lr=0.05", "space.name=fairnas", "search.constraints=['latency <= 3']"])
    assert cfg.name == "exp"
    assert (cfg.supernet.steps, cfg.supernet.lr, cfg.search.population) == (7, 0.05, 12)
    assert cfg.space.name == "fairnas" and cfg.search.constraints == ["latency <= 3"]
    assert [o.weight for o in cfg.search.objectives] == [0.4, 0.4, 0.2]


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["seed=3"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg.model_copy(update={"name": cfg.name})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["supernet.lrr=0.1"], "unknown config key 'supernet.lrr' (did you mean 'supernet.lr'?)"),
        (["supernet.lr=fast"], "config key 'supernet.lr'"),
        (["search.population=2"], "config key 'search.population'"),
        (["supernet.sampler=greedy"], "config key 'supernet.sampler'"),
        (["search.objectives=[{name: accuracy, weight: 0}]"], "objective weights are all zero"),
        (["search.objectives=[{name: accuracy, weight: -1}]"], "config key 'search.objectives.0.weight'"),
        (["nokey"], "not of the form"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(UserError) as err:
        load_config(None, overrides)
    assert message in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("supernet: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("supernett:\n  steps: 3\n")
    with pytest.raises(UserError, match="unknown config key 'supernett'"):
        load_config(typo)


def test_every_experiment_config_loads():
    from pathlib import Path

    configs = sorted(Path(__file__).parents[1].glob("experiments/**/*.yaml"))
    assert len(configs) >= 10
    for path in configs:
        assert isinstance(load_config(path), ExperimentConfig)


def test_atomic_writes_give_ordinary_file_permissions(tmp_path):
    import os
    import stat

    from supernet.io import atomic_write_text

    path = tmp_path / "out.json"
    atomic_write_text(path, "{}")
    reference = tmp_path / "plain.json"
    reference.write_text("{}")
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(reference).st_mode)
    assert path.read_text() == "{}" and not list(tmp_path.glob(".*.tmp"))


def test_run_lock_is_exclusive_and_sweeps_what_a_killed_writer_left(tmp_path):
    from moga.runio import run_lock

    (tmp_path / "search").mkdir()
    stale = tmp_path / "search" / ".state.json.k2j4_x.tmp"  # the name atomic_write_bytes gives its temporary file
    stale.write_text("{half")
    keep = tmp_path / "search" / "state.json"
    keep.write_text("{}")
    busy = tmp_path / "retrain" / "ab12cd34" / ".last.pt.x1y2z3.tmp"  # another process's retrain, locked on its own
    busy.parent.mkdir(parents=True)
    (busy.parent / ".lock").touch()
    busy.write_text("in flight")
    with run_lock(tmp_path):
        assert not stale.exists() and keep.read_text() == "{}"
        assert busy.exists()
        with pytest.raises(UserError, match="in use by another moga process"), run_lock(tmp_path):
            pass
