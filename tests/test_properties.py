"""Property tests (hypothesis) for the two parsers users type into: architecture strings and configs.

* Architectures: every genome of the MoGA and FairNAS spaces formats to a string that parses back to it;
  any other string either parses to an architecture whose canonical string is that text (stripped), or
  raises ``UserError`` with a one-line message, never another exception.
* Configs: an unknown key anywhere raises ``UserError`` naming its dotted path; a value of a wrong type
  anywhere raises ``UserError`` naming the key; random edits, random override strings and random YAML
  files either load or raise a one-line ``UserError``, never a pydantic, YAML or Python error.
"""

from __future__ import annotations

import contextlib
import math
import string
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from moga.config import ExperimentConfig, load_config
from moga.experiment import Experiment
from supernet import ZOO, Arch, UserError, get_space
from supernet.model import resolve_arch

SPACES = {name: get_space(name) for name in ("moga", "fairnas")}
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CONFIG_SETTINGS = settings(SETTINGS, max_examples=40)  # each example writes and loads a YAML file


def one_line(err: BaseException) -> str:
    text = str(err)
    assert len(text.splitlines()) == 1, text
    return text


# ----------------------------------------------------------------------------- architectures
@st.composite
def genomes(draw: st.DrawFn) -> tuple[str, tuple[int, ...]]:
    name = draw(st.sampled_from(sorted(SPACES)))
    return name, tuple(draw(st.integers(0, n - 1)) for n in SPACES[name].n_choices)


@SETTINGS
@given(genomes())
def test_every_genome_round_trips(case):
    name, genes = case
    space = SPACES[name]
    arch = Arch.from_genome(space, genes)
    text = str(arch)
    assert Arch.parse(space, text) == arch and resolve_arch(text, space) == arch
    assert np.array_equal(arch.genome, genes) and len(text.split("-")) == space.num_layers
    assert Arch.parse(space, f"  {text}\n") == arch  # surrounding whitespace is ignored


@SETTINGS
@given(genomes(), st.data())
def test_out_of_range_genomes_are_user_errors(case, data):
    name, genes = case
    n = SPACES[name].n_choices
    i = data.draw(st.integers(0, len(genes) - 1))
    bad = data.draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=n[i])))
    for genome in ((*genes[:i], bad, *genes[i + 1 :]), genes[:i], (*genes, 0)):
        with pytest.raises(UserError) as err:
            Arch.from_genome(SPACES[name], genome)
        one_line(err.value)


TOKENS = sorted({c.token for s in SPACES.values() for layer in s.layers for c in layer.choices} | {"skip", "k9e9", "K3E3", "k3e3 ", ""})


@st.composite
def almost_architectures(draw: st.DrawFn) -> str:
    """Strings near the grammar: valid strings with one edit, token soups of about the right length, noise."""
    name = draw(st.sampled_from(sorted(SPACES)))
    space = SPACES[name]
    kind = draw(st.sampled_from(["edit", "soup", "zoo", "noise"]))
    if kind == "edit":
        text = str(Arch.from_genome(space, [draw(st.integers(0, n - 1)) for n in space.n_choices]))
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = draw(st.sampled_from(string.printable + "é\u2028\x00"))
        return text[:i] + ch + text[i:] if op == "insert" else text[:i] + text[i + 1 :] if op == "delete" else text[:i] + ch + text[i + 1 :]
    if kind == "soup":
        n = draw(st.integers(space.num_layers - 1, space.num_layers + 1))
        return draw(st.sampled_from(["-", "--", " - ", "_"])).join(draw(st.lists(st.sampled_from(TOKENS), min_size=n, max_size=n)))
    if kind == "zoo":
        return draw(st.sampled_from([*ZOO, "MoGA-A", "fairnas-c", "moga_z"]))
    return draw(st.text(max_size=60))


@SETTINGS
@given(st.sampled_from(sorted(SPACES)), almost_architectures())
def test_any_string_parses_canonically_or_is_a_user_error(name, text):
    space = SPACES[name]
    try:
        arch = resolve_arch(text, space)
    except UserError as err:
        one_line(err)
        return
    if text.lower().replace("-", "_") not in ZOO:  # a zoo name resolves to its string
        assert str(arch) == text.strip()
    assert Arch.parse(space, str(arch)) == arch


# ----------------------------------------------------------------------------- configs
DEFAULTS = ExperimentConfig().model_dump(mode="json")


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a config dump: sections, fields, list items, their fields."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        out += [p for k, v in node.items() for p in paths(v, (*prefix, k))]
    elif isinstance(node, list):
        out += [p for i, v in enumerate(node) for p in paths(v, (*prefix, i))]
    return out


ALL_PATHS = paths(DEFAULTS)


def get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def put(node: Any, path: tuple, value: Any) -> None:
    get(node, path[:-1])[path[-1]] = value


def dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


# mappings whose keys are fields (``lut.tables`` maps free table names to tables: any key is valid there)
MAPPINGS = [()] + [p for p in ALL_PATHS if isinstance(get(DEFAULTS, p), dict) and p != ("lut", "tables")]
KEY = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)


def load_dict(tmp_path: Path, raw: dict, *keep: tuple) -> ExperimentConfig:
    """Load ``raw`` from a YAML file; only its top-level entries on the ``keep`` paths are written (the rest
    are defaults anyway, and YAML parsing is most of the cost)."""
    heads = {p[0] for p in keep if p}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in raw.items() if not keep or k in heads or () in keep}))
    return load_config(path)


def fresh() -> dict:
    return yaml.safe_load(yaml.safe_dump(DEFAULTS))


@CONFIG_SETTINGS
@given(st.sampled_from(MAPPINGS), KEY, st.one_of(st.none(), st.integers(), st.text(max_size=5)))
def test_unknown_keys_are_named(tmp_path, where, key, value):
    raw = fresh()
    assume(key not in get(raw, where))
    get(raw, where)[key] = value
    with pytest.raises(UserError) as err:
        load_dict(tmp_path, raw, where)
    assert f"unknown config key '{dotted((*where, key))}'" in one_line(err.value)


@CONFIG_SETTINGS
@given(st.sampled_from(ALL_PATHS))
def test_wrong_types_are_named(tmp_path, path):
    raw = fresh()
    put(raw, path, {"a": 1} if isinstance(get(raw, path), list) else [[1]])
    with pytest.raises(UserError) as err:
        load_dict(tmp_path, raw, path)
    assert f"config key '{dotted(path)}'" in one_line(err.value)


FLOAT_PATHS = [p for p in ALL_PATHS if isinstance(get(DEFAULTS, p), float)]


@CONFIG_SETTINGS
@given(st.sampled_from(FLOAT_PATHS), st.sampled_from([math.inf, -math.inf, math.nan]))
def test_non_finite_numbers_are_named(tmp_path, path, value):
    raw = fresh()
    put(raw, path, value)
    with pytest.raises(UserError) as err:
        load_dict(tmp_path, raw, path)
    assert f"config key '{dotted(path)}'" in one_line(err.value)


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@CONFIG_SETTINGS
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), VALUES), min_size=1, max_size=3))
def test_random_edits_load_or_name_a_key(tmp_path, edits):
    raw = fresh()
    for path, value in edits:
        with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier edit replaced a parent
            put(raw, path, value)
    try:
        cfg = load_dict(tmp_path, raw, *(p for p, _ in edits))
    except UserError as err:
        message = one_line(err)
        assert "config key '" in message, message
        named = message.split("config key '", 1)[1].split("'", 1)[0]
        # the key named is one that was edited, or lies inside or around it (a dict put where a field was)
        assert any(dotted(p).startswith(named) or named.startswith(dotted(p)) for p, _ in edits), (message, edits)
    else:  # what loads is usable: its space can be built (an infinite width used to overflow here)
        try:
            _ = Experiment(cfg).space
        except UserError as err:  # e.g. a space name that is no registered space or file
            one_line(err)


@SETTINGS
@given(st.text(max_size=40))
def test_random_overrides_load_or_are_user_errors(text):
    try:
        load_config(None, [text])
    except UserError as err:
        one_line(err)


@CONFIG_SETTINGS
@given(st.one_of(st.text(max_size=80).map(str.encode), st.binary(max_size=40)))
def test_random_files_load_or_are_user_errors(tmp_path, content):
    path = tmp_path / "exp.yaml"
    path.write_bytes(content)
    try:
        load_config(path)
    except UserError as err:
        one_line(err)
