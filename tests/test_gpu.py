"""The GPU path, checked on a CPU: precision resolution, the AMP code path (CPU bf16 autocast and a grad scaler),
device-side augmentation, the evaluator's memory bound, GPU latency backends' errors, DDP backend selection
and bench/gpu_check.py. Tests marked ``cuda`` run only where a GPU is (the GPU box runs bench/gpu_check.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench import gpu_check
from lut.gpu import check_same_gpu, driver_version
from lut.measure import make_backend
from moga.cli import main
from supernet import UserError, get_space
from supernet.config import RetrainConfig, SupernetConfig
from supernet.data import Dataset, Split, TensorLoader, crop_flip, crop_flip_params
from supernet.distributed import dist_backend, rank_device
from supernet.evaluate import SubnetEvaluator, working_set
from supernet.optim import Precision, autocast_dtype
from supernet.sampler import FairSampler
from supernet.step import supernet_step
from supernet.supernet import Supernet
from supernet.train import train_supernet

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a CUDA device object needs no GPU
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tiny_space_file):
    return get_space(str(tiny_space_file), num_classes=10, resolution=16, variant="cifar")


def synthetic(n_train: int = 64, n_val: int = 40, res: int = 16, size: int | None = None, augment: str = "cifar") -> Dataset:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        labels = torch.arange(n) % 10
        images = torch.randint(0, 200, (n, 3, size or res, size or res), generator=g, dtype=torch.uint8)
        return Split(images + (labels * 5).view(-1, 1, 1, 1).to(torch.uint8), labels)

    return Dataset(split(n_train), split(n_val), split(n_val), [f"c{i}" for i in range(10)], (0.5,) * 3, (0.25,) * 3, res, augment)


# ----------------------------------------------------------------------------- precision
def test_amp_resolves_per_device():
    assert autocast_dtype(CPU, True) is None and autocast_dtype(CPU, False) is None  # CPU results stay float32
    assert autocast_dtype(CUDA, True, lambda: True) is torch.bfloat16
    assert autocast_dtype(CUDA, True, lambda: False) is torch.float16  # no bf16 on the GPU: fp16 (+ grad scaler)
    assert autocast_dtype(CUDA, False, lambda: True) is None
    assert autocast_dtype(CUDA, "fp16", lambda: True) is torch.float16
    assert autocast_dtype(CPU, "bf16") is torch.bfloat16  # CPU autocast: the smoke test of the AMP path
    with pytest.raises(UserError, match="needs a CUDA device"):
        autocast_dtype(CPU, "fp16")
    with pytest.raises(UserError, match="no bfloat16 support"):
        autocast_dtype(CUDA, "bf16", lambda: False)
    p = Precision(CPU, True)
    assert not p.enabled and p.name == "fp32" and not p.scaler.is_enabled()
    assert Precision(CPU, "bf16").name == "bf16" and not Precision(CPU, "bf16").scaler.is_enabled()  # bf16 needs no scaling


def test_amp_config_accepts_auto_and_keeps_the_stored_value():
    assert SupernetConfig().amp is True and RetrainConfig().amp is True  # on by default (on CUDA)
    assert SupernetConfig(amp="auto").amp is True  # an alias: fingerprints of existing runs do not change
    assert SupernetConfig(amp="bf16").amp == "bf16" and SupernetConfig(amp=False).amp is False
    with pytest.raises(ValueError):
        SupernetConfig(amp="fp8")


def _grads(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def test_fair_step_with_a_grad_scaler_is_one_update_of_the_unscaled_gradients(tiny):
    """Each path's loss scaled alike, the shared part's summed feature gradient too: after one unscale the
    gradients equal the unscaled ones bit for bit (a power-of-two scale), and the m paths make one step."""
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 10
    paths = FairSampler(tiny.n_choices, seed=0).sample()
    criterion = torch.nn.CrossEntropyLoss()
    torch.manual_seed(0)
    net = Supernet(tiny).train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    supernet_step(net, x, y, paths, criterion, Precision(CPU), micro_batches=2)
    plain = _grads(net)

    net.load_state_dict(state)
    net.zero_grad(set_to_none=True)
    scaled = Precision(CPU)
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)  # what fp16 on CUDA uses, here on CPU
    supernet_step(net, x, y, paths, criterion, scaled, micro_batches=2)
    assert all(torch.equal(_grads(net)[k], 1024 * g) for k, g in plain.items())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    steps = []
    opt.register_step_post_hook(lambda *_: steps.append(1))
    scaled.scaler.unscale_(opt)
    assert all(torch.equal(_grads(net)[k], g) for k, g in plain.items())
    scaled.scaler.step(opt)
    scaled.scaler.update()
    assert steps == [1]


def test_bf16_autocast_fair_step_runs_on_cpu_close_to_float32(tiny):
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 10
    paths = FairSampler(tiny.n_choices, seed=0).sample()
    out = {}
    for amp in (False, "bf16"):
        torch.manual_seed(0)
        net = Supernet(tiny).train()
        stats = supernet_step(net, x, y, paths, torch.nn.CrossEntropyLoss(), Precision(CPU, amp))
        out[amp] = (stats.loss, torch.cat([g.flatten() for g in _grads(net).values()]))
    (loss32, g32), (loss16, g16) = out[False], out["bf16"]
    assert abs(loss16 - loss32) < 0.05 * loss32
    assert torch.isfinite(g16).all() and float(F.cosine_similarity(g16, g32, dim=0)) > 0.95


def test_training_with_bf16_autocast_on_cpu_says_so(tiny, tmp_path, capsys):
    cfg = SupernetConfig(steps=2, batch_size=8, eval_paths=0, warmup_steps=0, amp="bf16")
    train_supernet(tiny, synthetic(), cfg, tmp_path, progress=False)
    assert "(bf16 autocast)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- augmentation on the device
def test_crop_flip_matches_pad_crop_flip_image_by_image():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (6, 3, 10, 10), generator=g, dtype=torch.uint8)
    oy, ox, flip = crop_flip_params(g, 6, 0, 6, 10 + 2 * 4, 8)
    out = crop_flip(x, oy, ox, flip, 8, pad=4)
    assert out.shape == (6, 3, 8, 8) and out.dtype == torch.uint8
    for i in range(6):
        ref = F.pad(x[i], (4, 4, 4, 4))[:, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8]
        assert torch.equal(out[i], ref.flip(-1) if flip[i] else ref)
    assert flip.any() and not flip.all()  # both branches were checked
    again = crop_flip_params(torch.Generator().manual_seed(3).manual_seed(3), 6, 0, 6, 18, 8)
    g2 = torch.Generator().manual_seed(3)
    torch.randint(0, 256, (6, 3, 10, 10), generator=g2, dtype=torch.uint8)
    assert all(torch.equal(a, b) for a, b in zip(crop_flip_params(g2, 6, 0, 6, 18, 8), (oy, ox, flip), strict=True))
    assert again[0].shape == (6,)


@pytest.mark.parametrize("augment,size", [("cifar", 16), ("imagenet", 20), ("flip", 16)])
def test_loader_on_a_device_gives_the_same_batches(augment, size):
    """The device path (data moved once, indexed and augmented where it lives) equals the host path."""
    data = synthetic(res=16, size=size, augment=augment)
    host = data.loader("train", 16, seed=1, channels_last=True)
    placed = data.loader("train", 16, seed=1, channels_last=True, device="cpu")
    assert placed.device == CPU and not placed._pinned
    for (xa, ya), (xb, yb) in zip(host, placed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and xb.is_contiguous(memory_format=torch.channels_last)


def test_streamed_loader_moves_batches_to_the_device(tmp_path):
    from supernet.data import FileImages

    data = synthetic()
    files = []
    for i, img in enumerate(data.train.images[:8]):
        from PIL import Image

        path = tmp_path / f"{i}.png"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)
        files.append(str(path))
    streamed = TensorLoader(FileImages(files, 16), data.train.labels[:8], 4, True, 0, 16, data.mean, data.std, device="cpu")
    cached = TensorLoader(data.train.images[:8], data.train.labels[:8], 4, True, 0, 16, data.mean, data.std)
    for (xa, ya), (xb, yb) in zip(streamed, cached, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# ----------------------------------------------------------------------------- evaluation memory
def test_working_set_of_the_moga_space_at_imagenet_scale():
    ws = working_set(get_space("moga", num_classes=1000, resolution=224, variant="imagenet"))
    assert ws.cache_per_image == 4 * 16 * 112 * 112  # stem + separable output, float32
    outs = 2 * 24 * 56**2 + 3 * 40 * 28**2 + 4 * 80 * 14**2 + 2 * 112 * 14**2 + 3 * 160 * 7**2
    assert ws.walk_per_image == 4 * (outs + 24 * 56**2)  # one pending activation per depth + a segment's output
    assert round(ws.total(1000, 10_000) / 1e9, 1) == 28.6  # the figure in evaluate.py's docstring and README


def test_bounded_evaluation_walks_groups_with_identical_logits(tiny):
    data = synthetic(n_train=96, n_val=80, res=16)
    torch.manual_seed(0)
    net = Supernet(tiny).eval()
    pop = gpu_check.bred_population(tiny, 10)
    settings = {"calib_images": 32, "batch_size": 10, "calib_batch_size": 16}
    free = SubnetEvaluator(net, data, **settings)
    ws = working_set(net)
    assert len(SubnetEvaluator(net, data, max_working_bytes=ws.walk_per_image * (32 + 30), **settings)._val_groups(8)) == 3  # 3+3+2
    budget = ws.walk_per_image * (32 + 10)  # room for one chunk of 10 validation images at a time: 8 groups
    bounded = SubnetEvaluator(net, data, max_working_bytes=budget, **settings)
    assert len(bounded._val_groups(8)) == 8
    for a, b in zip(free.logits(pop), bounded.logits(pop), strict=True):
        assert torch.equal(a, b)
    assert bounded.peak_activation_bytes <= budget < free.peak_activation_bytes
    with pytest.raises(UserError, match=r"lower supernet\.eval\.calib_images"):
        SubnetEvaluator(net, data, max_working_bytes=ws.walk_per_image * 32, **settings).evaluate(pop[:1])


# ----------------------------------------------------------------------------- GPU latency backends without a GPU
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_gpu_backends_without_a_gpu_are_one_line_errors():
    with pytest.raises(UserError, match="needs a CUDA GPU, and this machine has none") as err:
        make_backend("torch-cuda")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="CUDAExecutionProvider"):
        make_backend("onnxruntime-cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_validating_a_gpu_table_here_is_a_one_line_error(tmp_path, capsys):
    exp = tmp_path / "e.yaml"
    exp.write_text(
        json.dumps(
            {"name": "e", "run_dir": str(tmp_path / "run"), "space": {"width_mult": 0.25}, "lut": {"tables": {"t": {"backend": "fake"}}}}
        )
    )
    assert main(["lut", "build", str(exp), "--no-progress"]) == 0
    path = tmp_path / "run" / "lut" / "t.json"
    table = json.loads(path.read_text())
    table["header"] |= {"runtime": "torch", "runtime_version": torch.__version__, "provider": "cuda", "gpu_name": "NVIDIA H200"}
    path.write_text(json.dumps(table))
    capsys.readouterr()
    assert main(["lut", "validate", str(path), "--nets", "6"]) == 2
    err = capsys.readouterr().err.strip()
    assert "torch-cuda needs a CUDA GPU" in err and len(err.splitlines()) == 1


def test_gpu_header_helpers(tmp_path):
    proc = tmp_path / "version"
    proc.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16)\nGCC version: gcc 12\n"
    )
    assert driver_version(proc) == "570.86.15"
    assert driver_version(tmp_path / "absent") == "unknown"
    check_same_gpu({"gpu_name": "NVIDIA H200"}, {"gpu_name": "NVIDIA H200"})
    check_same_gpu({}, {"gpu_name": "NVIDIA H200"})  # a CPU table's header names no GPU
    with pytest.raises(UserError, match="measured on NVIDIA A100"):
        check_same_gpu({"gpu_name": "NVIDIA A100"}, {"gpu_name": "NVIDIA H200"})


# ----------------------------------------------------------------------------- DDP
def test_ddp_uses_nccl_between_gpus_one_process_each():
    assert dist_backend(CUDA) == "nccl" and dist_backend(CPU) == "gloo"
    assert rank_device(CUDA, 3) == torch.device("cuda", 3)  # LOCAL_RANK picks the GPU
    assert rank_device(CPU, 3) == CPU


# ----------------------------------------------------------------------------- bench/gpu_check.py
def _gpu_check(*args: str, cuda: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)} | ({} if cuda else {"CUDA_VISIBLE_DEVICES": ""})
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_gpu_check_without_cuda_skips_every_item_and_exits_0(tmp_path):
    done = _gpu_check("--out", str(tmp_path / "check.txt"), cuda=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("cuda: not available (torch ")
    assert lines[1:-1] == [f"{item}: skipped (no CUDA)" for item in gpu_check.ITEMS]
    assert lines[-1] == f"gpu_check: 0 passed, 0 failed, {len(gpu_check.ITEMS)} skipped"
    assert (tmp_path / "check.txt").read_text().splitlines() == lines


@pytest.mark.slow
def test_gpu_check_writes_its_lines_to_the_file_and_an_item_over_its_limit_leaves_the_others(tmp_path):
    """eval gets 0.5 s (less than its process takes to start): it is killed and reported as timed out, the items
    around it still run and report, the file holds exactly the lines of stdout, and the exit code is 1."""
    out = tmp_path / "results" / "check.txt"  # the folder is made
    done = _gpu_check("--device", "cpu", "--size", "tiny", "--items", "cuda,eval,ddp", "--item-limit", "eval=0.5", "--out", str(out))
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert out.read_text().splitlines() == lines
    assert f"writing the lines to {out}" in done.stderr
    assert lines[0] == "settings: device cpu, size tiny, limits (s) cuda 20, eval 0.5, ddp 30, total 330"
    status = [line for line in lines if line.split(":")[0] in gpu_check.ITEMS]
    assert [s.split(" (")[0] for s in status] == ["cuda: passed", "eval: timed out after 0.5 s", "ddp: passed"]
    assert "device: cpu" in lines and "ddp_backend: gloo" in lines and not any(line.startswith("eval_") for line in lines)
    assert lines[-1] == "gpu_check: 2 passed, 0 failed, 1 timed out"


def _slow_item(emit, seconds: float) -> tuple[bool, dict]:
    """An item for ``run_item`` (run in a spawned process): one figure at once, then nothing for ``seconds``."""
    emit({"slow_pid": os.getpid()})
    time.sleep(seconds)
    return True, {"slow_never_printed": 1}


@pytest.mark.slow
def test_an_item_over_its_limit_is_killed_and_its_figures_so_far_are_kept():
    lines: list[str] = []
    start = time.perf_counter()
    assert gpu_check.run_item("slow", _slow_item, (600,), 15, lines.append) == "timed out"
    assert time.perf_counter() - start < 15 + gpu_check.KILL_WAIT
    assert lines[-1] == "slow: timed out after 15 s" and len(lines) == 2 and lines[0].startswith("slow_pid: ")
    with pytest.raises(ProcessLookupError):  # killed and reaped: no work left running
        os.kill(int(lines[0].split(": ")[1]), 0)
    lines.clear()
    assert gpu_check.run_item("quick", _slow_item, (0,), 60, lines.append) == "passed"
    assert lines[1:] == ["slow_never_printed: 1", lines[-1]] and lines[-1].startswith("quick: passed (")


@pytest.mark.slow
def test_the_total_limit_stops_the_run_and_skips_what_it_leaves_no_time_for(capsys):
    # ddp's process (torch, the data, two steps) takes seconds to start and run: 2 s of the total are not enough
    assert gpu_check.main(["--device", "cpu", "--size", "tiny", "--items", "ddp,cuda", "--total-limit", "2", "--out", "-"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert "writing the lines" not in captured.err  # '-': no file
    assert "ddp: timed out after 2 s" in lines and "cuda: skipped (the total limit of 2 s is spent)" in lines
    assert lines[-1] == "gpu_check: 0 passed, 0 failed, 1 timed out, 1 skipped"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--item-limit", "nosuch=3"], "unknown item 'nosuch'"),
        (["--item-limit", "-1"], "seconds must be a positive number"),
        (["--item-limit", "lut=soon"], "'soon' is not a number of seconds"),
        (["--total-limit", "0"], "seconds must be a positive number"),
        (["--items", "train,bogus"], "unknown item(s) bogus"),
        (["--items", "train,train"], "names an item twice"),
        (["--device", "gpu0"], "'gpu0' is not a device"),
        (["--device", "meta"], "the check runs on cuda or cpu"),
        (["--size", "huge"], "invalid choice: 'huge'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_gpu_check_bad_arguments_are_one_line_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("gpu_check: error: ") and message in err


def test_gpu_check_unwritable_out_and_missing_cuda_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--device", "cpu", "--out", str(tmp_path / "a_file" / "check.txt")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "cannot write there" in err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            gpu_check.main(["--device", "cuda"])
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "'cuda': CUDA is not available here (torch " in err


@pytest.mark.slow
def test_gpu_check_measurements_run_on_a_device_argument(tmp_path):
    """Every item's measurement function, on the CPU at tiny sizes (the GPU box runs them on CUDA)."""
    sizes, data = gpu_check.SIZES["tiny"], synthetic(n_train=32, n_val=24, res=32)
    ok, train = gpu_check.check_train(CPU, sizes, data)
    assert ok and train["amp_dtype"] == "bf16" and train["ratio_amp_vs_fp32"] > 0 and train["fair_step_peak_gpu_mb_amp"] == "n/a"
    ok, ev = gpu_check.check_eval(CPU, sizes, data)
    assert ok and ev["eval_identical"] and ev["eval_trie_candidates_per_s"] > 0 and ev["eval224_estimate_mb"] > 0
    lines = gpu_check.latency_table("fake", gpu_check.moga_space(0.25, 32, "imagenet", 1000), 1, sizes, tmp_path)
    assert lines["lut_fake_b1_mape_pct"] < 1 and lines["lut_fake_b1_provider"] == "fake 1 / fake"
    ok, ddp = gpu_check.check_ddp(CPU, sizes, data)
    assert ok and ddp["ddp_backend"] == "gloo" and ddp["ddp_max_weight_diff"] == 0.0


# ----------------------------------------------------------------------------- on a GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_loader_keeps_the_data_on_the_gpu_and_matches_the_cpu():
    data = synthetic()
    for (xa, ya), (xb, yb) in zip(data.loader("train", 16, seed=1), data.loader("train", 16, seed=1, device="cuda"), strict=True):
        assert xb.is_cuda and yb.is_cuda and torch.equal(xa, xb.cpu()) and torch.equal(ya, yb.cpu())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (one process each)")
def test_ddp_nccl_two_gpus_match_single_gpu_micro_batches(tmp_path, tiny_space_file):
    """The gloo test's contract on GPUs: 2 NCCL ranks == 1 process with 2 micro-batches (float32, TF32 off)."""
    from supernet.train import load_supernet
    from tests.test_train import _experiment

    runs = {}
    for name, nproc, micro in (("ddp", 2, 1), ("single", 1, 2)):
        exp = _experiment(tmp_path, tiny_space_file, tmp_path / name, steps=3, eval_paths=0, amp=False, micro_batches=micro)
        cfg = json.loads(exp.read_text()) | {"device": "cuda"}
        exp.write_text(json.dumps(cfg))
        run = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "moga"]
        env = {**os.environ, "NVIDIA_TF32_OVERRIDE": "0"}
        done = subprocess.run([*run, "supernet", "train", str(exp), "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = load_supernet(tmp_path / name / "supernet" / "supernet.pt").state_dict()
    params = [
        name for name, _ in Supernet(get_space(str(tiny_space_file), num_classes=10, resolution=16, variant="cifar")).named_parameters()
    ]
    assert max(float((runs["ddp"][k] - runs["single"][k]).abs().max()) for k in params) < 1e-4


def test_a_gpu_tables_header_keeps_the_gpu_fields_and_another_gpu_measures_afresh(tmp_path):
    from lut.build import build_table
    from lut.measure import FakeBackend, MeasureProtocol

    class FakeGpu(FakeBackend):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def info(self) -> dict:
            return super().info() | {"gpu_name": self.name, "driver_version": "570.86.15", "cuda_runtime": "13.0"}

    space, path, protocol = get_space("moga", num_classes=10, resolution=32, width_mult=0.25), tmp_path / "g.json", MeasureProtocol(1, 2, 1)
    table, n = build_table(space, FakeGpu("NVIDIA H200"), path, device="h200", protocol=protocol, progress=False)
    assert table.header["gpu_name"] == "NVIDIA H200" and table.header["driver_version"] == "570.86.15" and n == len(table.entries)
    assert build_table(space, FakeGpu("NVIDIA H200"), path, device="h200", protocol=protocol, progress=False)[1] == 0  # up to date
    assert build_table(space, FakeGpu("NVIDIA A100"), path, device="h200", protocol=protocol, progress=False)[1] == n  # another GPU
