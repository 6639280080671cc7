"""Latency tables: enumeration, build/resume, file format and its errors, prediction, import/export, validation."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from lut.build import build_table, export_blocks, import_csv, progress_path
from lut.measure import FakeBackend, MeasureProtocol, OrtBackend, block_job, make_backend
from lut.table import HEADER_FIELDS, Calibration, LatencyTable, space_blocks
from lut.validate import kendall_tau, validate
from moga.cli import main
from moga.experiment import Experiment
from supernet import Arch, UserError, get_space
from tests.tiny_experiment import TINY_SPACE, tiny_space_yaml

PROTO = MeasureProtocol(warmup=1, runs=3, rounds=2)


@pytest.fixture
def fake_table(tmp_path, cifar_space) -> Path:
    path = tmp_path / "fake.json"
    build_table(cifar_space, FakeBackend(), path, device="fake", protocol=PROTO, progress=False)
    return path


def _header_args(space_args=("--space", "moga", "--resolution", "32", "--num-classes", "10", "--variant", "cifar")) -> list[str]:
    return ["--device", "phone", "--runtime", "tflite", "--provider", "gpu", *space_args]


# ----------------------------------------------------------------------------- enumeration
def test_entries_cover_every_layer_choice_and_dedupe(cifar_space):
    blocks = space_blocks(cifar_space)
    keys = [cifar_space.layer_shape(i, c).key for i, n in enumerate(cifar_space.n_choices) for c in range(n)]
    assert set(keys) | {cifar_space.stem.key, cifar_space.separable.key, cifar_space.head.key} == set(blocks)
    assert len(keys) == 14 * 12 and len(blocks) == 10 * 12 + 3  # layers of equal shape (e.g. 4 and 5) share entries
    order = list(blocks)
    assert order[0] == cifar_space.stem.key and order[-1] == cifar_space.head.key


def test_skip_choices_have_no_entry_and_cost_nothing(tmp_path, tiny_space_file):
    space = get_space(str(tiny_space_file), num_classes=5, resolution=16)
    assert not any(k.startswith("skip") for k in space_blocks(space))
    table, _ = build_table(space, FakeBackend(), tmp_path / "t.json", device="fake", protocol=PROTO, progress=False)
    arch = Arch.parse(space, "skip-k3e2-skip")
    by_hand = sum(table.entries[b.key].median_ms for b in space.walk(arch.genes) if b.kind != "skip")
    assert table.predict(arch) == pytest.approx(by_hand)


# ----------------------------------------------------------------------------- build, resume, file
def test_build_save_load_round_trip(fake_table, cifar_space):
    table = LatencyTable.load(fake_table)
    assert set(HEADER_FIELDS) <= set(table.header)
    assert (table.header["dtype"], table.header["resolution"], table.header["variant"], table.header["runtime"]) == (
        "float32",
        32,
        "cifar",
        "fake",
    )
    assert list(table.entries) == list(space_blocks(cifar_space))
    assert all(e.count == PROTO.runs * PROTO.rounds and e.median_ms > 0 for e in table.entries.values())
    assert LatencyTable.from_json(json.loads(fake_table.read_text())).entries == table.entries


class _Interrupting(FakeBackend):
    def __init__(self, after: int):
        super().__init__()
        self.after = after

    def load(self, job):
        if self.total_loads == self.after:
            raise KeyboardInterrupt
        return super().load(job)


def test_resume_skips_measured_entries(tmp_path, cifar_space):
    path, n = tmp_path / "cpu.json", len(space_blocks(cifar_space))
    with pytest.raises(KeyboardInterrupt):
        build_table(cifar_space, _Interrupting(after=n + 7), path, device="fake", protocol=PROTO, progress=False)
    assert not path.exists() and progress_path(path).exists()
    backend = FakeBackend()
    table, measured = build_table(cifar_space, backend, path, device="fake", protocol=PROTO, progress=False)
    assert backend.total_loads == 2 * n - (n + 7) and measured == n  # only the rounds not yet done
    assert not progress_path(path).exists()
    again = FakeBackend()
    assert build_table(cifar_space, again, path, device="fake", protocol=PROTO, progress=False)[1] == 0 and again.total_loads == 0
    fresh, _ = build_table(cifar_space, FakeBackend(), tmp_path / "fresh.json", device="fake", protocol=PROTO, progress=False)
    assert fresh.entries == table.entries
    longer = dataclasses.replace(PROTO, runs=PROTO.runs + 1)  # asking for more runs is not "up to date"
    assert build_table(cifar_space, FakeBackend(), path, device="fake", protocol=longer, progress=False)[1] == n


def test_unstable_entries_get_extra_rounds(tmp_path, cifar_space):
    backend = FakeBackend(noise=0.3, seed=1)
    proto = MeasureProtocol(warmup=1, runs=3, rounds=2, tolerance=0.05, extra_rounds=2)
    table, _ = build_table(cifar_space, backend, tmp_path / "n.json", device="fake", protocol=proto, progress=False)
    n = len(space_blocks(cifar_space))
    assert 2 * n < backend.total_loads <= 4 * n
    assert {e.count for e in table.entries.values()} <= {6, 9, 12}


# ----------------------------------------------------------------------------- prediction
def test_vectorised_prediction_matches_per_arch_and_hand_sum(fake_table, cifar_space):
    table = LatencyTable.load(fake_table)
    rng = np.random.default_rng(0)
    genomes = np.stack([Arch.random(cifar_space, rng).genome for _ in range(50)])
    fast = table.predictor(cifar_space).predict_genomes(genomes)
    # the reference is the definition: the sum of the table's entries along each network's shape walk
    by_hand = [sum(table.entries[b.key].median_ms for b in cifar_space.walk(Arch.from_genome(cifar_space, g).genes)) for g in genomes]
    np.testing.assert_allclose(fast, by_hand, rtol=1e-12)
    assert len(set(np.round(fast, 9))) > 40  # the networks differ, so a constant answer cannot pass
    with pytest.raises(UserError, match="integer array"):
        table.predictor(cifar_space).predict_genomes(genomes[:, :3])
    with pytest.raises(UserError, match="outside"):
        table.predictor(cifar_space).predict_genomes(genomes + 20)


def test_calibration_is_applied_and_stored(fake_table, cifar_space, tmp_path):
    table = LatencyTable.load(fake_table)
    arch = Arch.random(cifar_space, np.random.default_rng(1))
    raw = table.predict(arch)
    calibrated = table.with_calibration(Calibration(1.5, 0.25, 10, {"note": "x"}))
    assert calibrated.predict(arch) == pytest.approx(1.5 * raw + 0.25) and calibrated.predict_raw(arch) == pytest.approx(raw)
    again = LatencyTable.load(calibrated.save(tmp_path / "c.json"))
    assert again.calibration == calibrated.calibration and again.calibration.info["note"] == "x"
    assert table.predict(arch) == pytest.approx(raw)  # the original is untouched


@pytest.mark.parametrize(
    ("space_kwargs", "batch", "needle"),
    [
        ({"resolution": 224}, None, "measured for resolution 32, the experiment uses 224"),
        ({"num_classes": 100}, None, "measured for num classes 10, the experiment uses 100"),
        ({"width_mult": 0.75}, None, "measured for width mult 1.0, the experiment uses 0.75"),
        ({"variant": "imagenet"}, None, "measured for variant cifar, the experiment uses imagenet"),
        ({"name": "fairnas"}, None, "measured for space moga, the experiment uses fairnas"),
        ({}, 8, "measured at batch 1, the experiment uses batch 8"),
    ],
)
def test_check_space_refuses_other_spaces(fake_table, space_kwargs, batch, needle):
    kw = {"name": "moga", "num_classes": 10, "resolution": 32, "variant": "cifar"} | space_kwargs
    space = get_space(kw.pop("name"), **kw)
    with pytest.raises(UserError, match=needle):
        LatencyTable.load(fake_table).check_space(space, batch=batch)


def test_missing_entries_are_named(fake_table, cifar_space, tmp_path):
    obj = json.loads(fake_table.read_text())
    gone = list(obj["entries"])[3:8]
    for k in gone:
        del obj["entries"][k]
    (tmp_path / "m.json").write_text(json.dumps(obj))
    with pytest.raises(UserError, match=r"lacks 5 entries .*: " + gone[0].replace(".", r"\.") + r".*\(and 2 more\)"):
        LatencyTable.load(tmp_path / "m.json").predict(Arch.random(cifar_space, np.random.default_rng(0)))


def _corrupt(obj: dict, how: str) -> str:
    first = next(iter(obj["entries"]))
    if how == "non-numeric":
        obj["entries"][first]["median_ms"] = "fast"
    elif how == "negative":
        obj["entries"][first]["std_ms"] = -1.0
    elif how == "missing timing":
        del obj["entries"][first]["mean_ms"]
    elif how == "missing header":
        del obj["header"]["provider"]
    elif how == "schema":
        obj["schema_version"] = 99
    elif how == "calibration":
        obj["calibration"] = {"slope": "x", "intercept": 0}
    text = json.dumps(obj, indent=1)
    if how == "duplicate":
        text = text.replace('"entries": {', '"entries": {"' + first + '": {"median_ms": 1, "mean_ms": 1, "std_ms": 0, "count": 1},', 1)
    if how == "corrupt":
        text = text[: len(text) // 2]
    return text


@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("non-numeric", "non-numeric median_ms 'fast'"),
        ("negative", "negative std_ms -1.0"),
        ("missing timing", "lacks 'mean_ms'"),
        ("missing header", "header lacks field(s) provider"),
        ("schema", "unsupported schema_version 99"),
        ("calibration", "calibration slope must be a number"),
        ("duplicate", "duplicate key 'stem:32x32x3-16"),
        ("corrupt", "corrupt JSON"),
    ],
)
def test_bad_tables_are_named(fake_table, tmp_path, how, needle):
    bad = tmp_path / "bad.json"
    bad.write_text(_corrupt(json.loads(fake_table.read_text()), how))
    with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)")) as err:
        LatencyTable.load(bad)
    assert "bad.json" in str(err.value)


# ----------------------------------------------------------------------------- CLI
def test_arch_show_includes_latency(fake_table, capsys):
    space = ["--resolution", "32", "--num-classes", "10", "--variant", "cifar"]
    assert main(["arch", "show", "moga_a", *space, "--lut", str(fake_table), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    expected = LatencyTable.load(fake_table).predict(
        Arch.parse(get_space("moga", num_classes=10, resolution=32, variant="cifar"), info["arch"])
    )
    assert info["latency_ms"] == pytest.approx(expected)
    assert main(["arch", "show", "moga_a", "--lut", str(fake_table)]) == 2
    assert "measured for resolution 32, the experiment uses 224" in capsys.readouterr().err


def _write_csv(path: Path, rows: list[tuple]) -> Path:
    path.write_text("key,median_ms,mean_ms,std_ms,count\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def test_import_from_csv(fake_table, tmp_path, cifar_space, capsys):
    table = LatencyTable.load(fake_table)
    rows = [(k, e.median_ms, e.mean_ms, e.std_ms, e.count) for k, e in table.entries.items()]
    out = tmp_path / "phone.json"
    assert main(["lut", "import", str(_write_csv(tmp_path / "m.csv", rows)), "--out", str(out), *_header_args()]) == 0
    phone = LatencyTable.load(out)
    assert phone.entries == table.entries and (phone.header["device"], phone.header["runtime"], phone.header["provider"]) == (
        "phone",
        "tflite",
        "gpu",
    )
    phone.check_space(cifar_space)
    (tmp_path / "median_only.csv").write_text("key,median_ms\n" + "".join(f"{k},{e.median_ms}\n" for k, e in table.entries.items()))
    only = import_csv(
        tmp_path / "median_only.csv",
        cifar_space,
        {"device": "d", "runtime": "r", "runtime_version": "1", "provider": "p", "threads": 1, "batch": 1},
    )
    assert all(e.mean_ms == e.median_ms and e.count == 0 for e in only.entries.values())


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda r: [(r[0][0], "", *r[0][2:]), *r[1:]], "missing median_ms"),
        (lambda r: [(r[0][0], "abc", *r[0][2:]), *r[1:]], "non-numeric median_ms 'abc'"),
        (lambda r: [(r[0][0], -0.5, *r[0][2:]), *r[1:]], "negative median_ms '-0.5'"),
        (lambda r: [*r, r[1]], "duplicate key 'sep"),
        (lambda r: [*r, ("ir:9x9x9-9:k3e3:s1:se0:relu", 1, 1, 0, 1)], "1 key(s) are not blocks of space 'moga' at resolution 32: ir:9x9x9"),
        (lambda r: r[:-4], "4 block(s) of space 'moga' have no timing: ir:"),
    ],
)
def test_import_errors_are_named(fake_table, tmp_path, cifar_space, edit, needle):
    table = LatencyTable.load(fake_table)
    rows = edit([(k, e.median_ms, e.mean_ms, e.std_ms, e.count) for k, e in table.entries.items()])
    header = {"device": "d", "runtime": "r", "runtime_version": "1", "provider": "p", "threads": 1, "batch": 1}
    with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        import_csv(_write_csv(tmp_path / "m.csv", rows), cifar_space, header)


def test_cli_error_is_one_line_and_keeps_the_old_table(fake_table, tmp_path, capsys):
    out = tmp_path / "keep.json"
    out.write_bytes(fake_table.read_bytes())
    before = out.read_bytes()
    _write_csv(tmp_path / "bad.csv", [("stem:32x32x3-16:k3:s1:hswish", "NaNx", 1, 0, 1)])
    assert main(["lut", "import", str(tmp_path / "bad.csv"), "--out", str(out), *_header_args()]) == 2
    err = capsys.readouterr().err
    assert "non-numeric median_ms 'NaNx'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before
    (tmp_path / "t.json").write_text('{"schema_version": 1, "header": {}, "entries": {}}')
    assert main(["lut", "show", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert "header lacks field(s) device" in err and len(err.strip().splitlines()) == 1


def _experiment(tmp_path: Path, tables: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(f"run_dir: {tmp_path / 'run'}\nspace: {{resolution: 32, num_classes: 10, variant: cifar}}\nlut:\n  tables:\n{tables}")
    return path


def test_cli_build_several_tables_and_load_them(tmp_path, fake_table, capsys):
    tables = f"    cpu: {{backend: fake, runs: 3, warmup: 1}}\n    phone: {{path: {fake_table}}}\n"
    exp = _experiment(tmp_path, tables)
    assert main(["lut", "build", str(exp), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "cpu: measured" in out and "phone:" in out and "fits space moga at 32" in out
    loaded = Experiment.load(exp).tables()
    assert set(loaded) == {"cpu", "phone"} and loaded["cpu"].header["runtime"] == "fake"
    assert main(["lut", "build", str(exp), "--no-progress", "--table", "cpu"]) == 0 and "up to date" in capsys.readouterr().out
    assert main(["lut", "show", str(tmp_path / "run" / "lut" / "cpu.json"), "--entries"]) == 0
    shown = capsys.readouterr().out
    assert "entries: " in shown and "calibration: none" in shown and "stem:32x32x3-16" in shown
    # a table made for another resolution is refused, and the copy already in the run stays as it was
    copy = tmp_path / "run" / "lut" / "phone.json"
    before = copy.read_bytes()
    assert main(["lut", "build", str(exp), "lut.resolution=64", "--table", "phone"]) == 2
    assert "measured for resolution 32, the experiment uses 64" in capsys.readouterr().err and copy.read_bytes() == before
    assert main(["lut", "build", str(exp), "--table", "gpu"]) == 2 and "no latency table 'gpu'" in capsys.readouterr().err


def test_cli_validate_with_fake_backend(fake_table, tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        main(["lut", "validate", str(fake_table), "--nets", "12", "--calib", "5", "--out", str(out), "--no-progress", "--runs", "3"]) == 0
    )
    assert "held-out networks: 7" in capsys.readouterr().out
    rows = (out / "validation.csv").read_text().splitlines()
    assert rows[0] == "arch,raw_pred_ms,pred_ms,measured_ms,measured2_ms,split" and len(rows) == 13
    assert (out / "validation.png").read_bytes()[:4] == b"\x89PNG"
    cal = LatencyTable.load(fake_table).calibration
    assert cal.slope == pytest.approx(1.1) and cal.intercept == pytest.approx(0.05) and cal.fitted_on == 5
    assert cal.info["within_5_calibrated"] == 100.0 and cal.info["held_out"] == 7
    # the same figures from timings measured elsewhere (e.g. on the phone)
    measured = tmp_path / "nets.csv"
    measured.write_text("arch,measured_ms\n" + "".join(f"{r.split(',')[0]},{r.split(',')[3]}\n" for r in rows[1:]))
    assert main(["lut", "validate", str(fake_table), "--measured", str(measured), "--calib", "5", "--out", str(out)]) == 0
    assert LatencyTable.load(fake_table).calibration.slope == pytest.approx(1.1, rel=1e-3)


def test_validate_recovers_a_noisy_bias(fake_table, cifar_space):
    table = LatencyTable.load(fake_table)
    calibrated, report = validate(
        table, cifar_space, FakeBackend(noise=0.01, context=1.2), nets=40, calib=10, progress=False, protocol=PROTO
    )
    assert calibrated.calibration.slope == pytest.approx(1.2, rel=0.05)
    assert report.held_out["raw"]["within_10"] < 50 < report.held_out["calibrated"]["within_5"]
    assert table.calibration is None


def test_export_blocks_match_torch(tmp_path):
    import onnxruntime as ort
    import torch

    (tmp_path / "tiny.yaml").write_text(tiny_space_yaml(fc_channels=48))  # a head with an fc layer is exported too
    space = get_space(str(tmp_path / "tiny.yaml"), num_classes=5, resolution=16)
    counts = export_blocks(space, tmp_path / "out", nets=1)
    manifest = (tmp_path / "out" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "key,file,input_shape" and counts["blocks"] == len(manifest) - 1 == len(space_blocks(space))
    for line in manifest[1:]:
        key, file, shape = line.split(",")
        job = block_job(space_blocks(space)[key])
        assert shape == "x".join(map(str, job.input_shape))
        x = np.random.default_rng(0).standard_normal(job.input_shape, dtype=np.float32)
        got = ort.InferenceSession(str(tmp_path / "out" / file), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, job.module()(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    nets = (tmp_path / "out" / "nets" / "manifest.csv").read_text().splitlines()
    assert len(nets) == 2 and Arch.parse(space, nets[1].split(",")[0])


def test_cli_export_blocks(tmp_path, capsys, tiny_space_file):
    exp = _experiment(tmp_path, "    cpu: {batch: 2}\n")
    assert main(["lut", "export-blocks", str(exp), str(tmp_path / "out"), f"space.name={tiny_space_file}", "space.variant=imagenet"]) == 0
    assert "batch 2" in capsys.readouterr().out
    assert (tmp_path / "out" / "manifest.csv").read_text().splitlines()[1].endswith(",2x3x32x32")


# ----------------------------------------------------------------------------- real runtime, statistics
def test_onnxruntime_measures_a_couple_of_blocks(cifar_space):
    backend = OrtBackend("cpu", threads=1)
    try:
        jobs = [block_job(cifar_space.stem), block_job(cifar_space.layer_shape(13, 0))]
        from lut.measure import measure

        samples = measure(jobs, backend, MeasureProtocol(warmup=2, runs=3, rounds=1), progress=False)
        assert all(len(samples[j.key]) == 1 and 0 < min(samples[j.key][0]) < 100 for j in jobs)
        import onnxruntime

        assert backend.info()["runtime_version"] == onnxruntime.__version__ and backend.info()["provider"] == "CPUExecutionProvider"
    finally:
        backend.close()


def test_cpu_clock_needs_one_cpu_thread():
    with pytest.raises(UserError, match="only valid on the CPU provider with 1 thread"):
        OrtBackend("cpu", threads=2, clock="cpu")
    with pytest.raises(UserError, match="unknown clock 'sundial'"):
        OrtBackend("cpu", clock="sundial")


def test_cuda_backend_absent_is_a_user_error():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    with pytest.raises(UserError, match="has no CUDAExecutionProvider"):
        make_backend("onnxruntime-cuda")


def test_kendall_tau_by_hand():
    # x = 1..5, y = 3 4 1 2 5: of the 10 pairs, 6 concordant and 4 discordant -> τ = 0.2
    assert kendall_tau([1, 2, 3, 4, 5], [3, 4, 1, 2, 5]) == pytest.approx(0.2)
    # ties: x = 1 1 2 3, y = 1 2 2 3: nc = 4, nd = 0, pairs untied in x = 5, in y = 5 -> τ-b = 4 / 5
    assert kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_table_of_a_custom_space_is_shown_and_validated_without_its_yaml(tmp_path, capsys):
    spec = tmp_path / "tiny_space.yaml"
    spec.write_text(TINY_SPACE)  # a copy of its own: the test deletes it
    space = get_space(str(spec), num_classes=4, resolution=32, variant="cifar")
    path = tmp_path / "tiny.json"
    build_table(space, FakeBackend(), path, device="fake", protocol=PROTO, progress=False)
    spec.unlink()  # e.g. the table was copied to another machine
    assert main(["lut", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "space            tiny" in out and "3 searchable layers" in out and "space range:" in out
    assert main(["lut", "validate", str(path), "--nets", "8", "--no-progress"]) == 0
    assert "MAPE" in capsys.readouterr().out
