"""`gandist export` (TorchScript, ONNX) and the Python API (`from gandist import load_generator`)
on tiny trained runs: unconditional DCGAN (with EMA) and MLP, class-conditional (spectral norm),
multi-label conditional. Exported files are loaded with torch.jit.load and onnxruntime and must
match the eager generator, at a batch size other than the one traced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gandist import load_generator
from gandist.cli import main as cli_main
from gandist.export import METADATA_KEY, export_generator
from tests.integration.tiny_runs import RUNS, train_tiny

CASES = sorted(RUNS)
# torch >= 2.10 calls torch.jit deprecated; loading TorchScript is still what this format is for.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
BATCH = 5  # the export traces with 2: any batch size must work


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runs")
    return {name: train_tiny(name, out).run_dir for name in CASES}


@pytest.fixture(scope="module")
def exported(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """(case, format) -> (path, metadata), each exported once for the whole module."""
    out = tmp_path_factory.mktemp("exports")
    suffix = {"torchscript": "pt", "onnx": "onnx"}
    return {
        (case, fmt): export_generator(runs[case], fmt, out / f"{case}.{suffix[fmt]}")
        for case in CASES
        for fmt in ("torchscript", "onnx")
    }


def inputs(G, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    z = torch.randn(BATCH, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return z, G.labels(None, BATCH, seed=seed)


@pytest.mark.parametrize("case", CASES)
def test_torchscript_matches_eager(case: str, runs, exported) -> None:
    path, meta = exported[(case, "torchscript")]
    G = load_generator(runs[case])
    z, y = inputs(G)
    with torch.no_grad():
        ref = G(z, y)
        m = torch.jit.load(str(path))
        got = m(z) if y is None else m(z, y)
    assert got.shape == ref.shape == (BATCH, *G.sample_shape)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    extra = {f"{METADATA_KEY}.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra[f"{METADATA_KEY}.json"]) == meta


@pytest.mark.parametrize("case", CASES)
def test_onnx_matches_eager(case: str, runs, exported) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path, meta = exported[(case, "onnx")]
    G = load_generator(runs[case])
    z, y = inputs(G)
    with torch.no_grad():
        ref = G(z, y).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = {"z": z.numpy()}
    if y is not None:
        feed["labels"] = y.numpy()
        want_dtype = np.int64 if G.info.label_type == "class" else np.float32
        assert feed["labels"].dtype == want_dtype
    assert names == list(feed)
    got = session.run(None, feed)[0]
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props[METADATA_KEY]) == meta


def test_metadata_says_how_to_drive_the_file(runs, exported) -> None:
    _, meta = exported[("multi", "onnx")]
    assert meta["z_dim"] == 8 and meta["label_type"] == "multi"
    assert len(meta["label_names"]) == 24 and meta["output_shape"] == ["batch", 3, 16, 16]
    assert meta["inputs"]["labels"] == {
        "dtype": "float32",
        "shape": ["batch", 24],
        "meaning": "multi-hot",
    }
    assert meta["output_range"] == [-1.0, 1.0] and meta["step"] == 2
    _, meta = exported[("class", "torchscript")]
    assert meta["inputs"]["labels"]["dtype"] == "int64" and meta["weights"] == "generator"
    _, meta = exported[("dcgan", "torchscript")]
    assert meta["weights"] == "ema_generator" and "labels" not in meta["inputs"]


def test_exported_files_load_without_gandist(exported, tmp_path: Path) -> None:
    """A fresh interpreter that cannot import gandist runs both files."""
    ts, _ = exported[("class", "torchscript")]
    ox, _ = exported[("class", "onnx")]
    code = f"""
import sys, warnings
sys.modules["gandist"] = None  # any import of gandist now fails
warnings.simplefilter("ignore", FutureWarning)
import numpy as np, onnxruntime as ort, torch
z = torch.randn(3, 8)
y = torch.tensor([0, 4, 9])
a = torch.jit.load({str(ts)!r})(z, y)
b = ort.InferenceSession({str(ox)!r}, providers=["CPUExecutionProvider"]).run(
    None, {{"z": z.numpy(), "labels": y.numpy()}})[0]
assert a.shape == (3, 1, 32, 32) and np.allclose(a.numpy(), b, atol=1e-4)
print("ok")
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_cli_export_ema_by_default_and_no_ema(runs, tmp_path: Path, capsys) -> None:
    run = runs["dcgan"]
    ck = run / "checkpoints" / "step_2"
    ts = ["--format", "torchscript"]
    assert cli_main(["export", str(run), *ts, "--out", str(tmp_path / "a.pt")]) == 0
    assert "ema_generator weights, step 2" in capsys.readouterr().out
    assert cli_main(["export", str(ck), *ts, "--no-ema", "--out", str(tmp_path / "b.pt")]) == 0
    assert "(generator weights, step 2)" in capsys.readouterr().out
    z = torch.randn(4, 8)
    with torch.no_grad():
        ema_out = torch.jit.load(str(tmp_path / "a.pt"))(z)
        raw_out = torch.jit.load(str(tmp_path / "b.pt"))(z)
        torch.testing.assert_close(ema_out, load_generator(run)(z))
        torch.testing.assert_close(raw_out, load_generator(run, ema=False)(z))
    assert not torch.allclose(ema_out, raw_out)  # decay 0.5 over 2 steps: they differ


def test_cli_export_errors_name_the_fix(tmp_path: Path, capsys) -> None:
    assert cli_main(["export", str(tmp_path), "--format", "onnx", "--out", "x.onnx"]) == 2
    assert "no checkpoint found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["export", str(tmp_path), "--format", "tflite", "--out", "x"])


# ------------------------------------------------------------------ the Python API


def test_import_gandist_stays_light() -> None:
    code = "import sys, gandist; assert 'torch' not in sys.modules; print(gandist.__version__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import gandist

    assert proc.stdout.strip() == gandist.__version__
    assert callable(gandist.load_generator) and "load_generator" in gandist.__all__


def test_load_generator_ema_by_default_eval_mode(runs) -> None:
    run = runs["dcgan"]
    G = load_generator(run)
    assert not G.training and not G.net.training and G.ema and not G.conditional
    assert G.checkpoint == run / "checkpoints" / "step_2"
    ema = load_file(str(G.checkpoint / "ema_generator.safetensors"))
    raw = load_file(str(G.checkpoint / "generator.safetensors"))
    ours = G.net.state_dict()
    # the EMA weights as saved; BatchNorm statistics recomputed for them (training/ema.py)
    stats = ("running_mean", "running_var", "num_batches_tracked")
    assert all(torch.equal(ours[k], ema[k]) for k in ema if not k.endswith(stats))
    assert any(not torch.equal(ours[k], ema[k]) for k in ema if k.endswith("running_mean"))
    G_raw = load_generator(run, ema=False)
    assert not G_raw.ema
    assert all(torch.equal(G_raw.net.state_dict()[k], raw[k]) for k in raw)
    # No EMA in the run: ema=True falls back to the generator and says so.
    assert not load_generator(runs["mlp"]).ema


def test_sample_shapes_seeds_and_range(runs) -> None:
    G = load_generator(runs["dcgan"])
    a, b, c = G.sample(6, seed=3), G.sample(6, seed=3), G.sample(6, seed=4)
    assert a.shape == (6, 1, 32, 32) and not a.requires_grad
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    with pytest.raises(ValueError, match="unconditional"):
        G.sample(2, labels=1)
    with pytest.raises(ValueError, match="n must be >= 1"):
        G.sample(0)
    # truncation: the same noise, scaled
    z = torch.randn(6, G.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(G.sample(6, seed=3, truncation=0.5), G(z * 0.5))
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        G.sample(2, truncation=1.5)


def test_sample_labels_for_class_models(runs) -> None:
    G = load_generator(runs["class"])
    assert G.conditional and len(G.label_names) == 10
    assert G.labels(None, 12).tolist() == [*range(10), 0, 1]
    assert G.labels(3, 4).tolist() == [3, 3, 3, 3]
    name = G.label_names[7]
    assert G.labels(name, 2).tolist() == [7, 7]
    assert G.labels([name, 2, "5"], 3).tolist() == [7, 2, 5]
    # numpy's integers and arrays (`for c in np.arange(10)`): a bare TypeError before
    assert G.labels(np.int64(3), 2).tolist() == [3, 3]
    assert G.labels(np.array([1, 2, 3]), 3).tolist() == [1, 2, 3]
    assert G.labels([np.int64(1), 2, "5"], 3).tolist() == [1, 2, 5]
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G.sample(3, labels=[1, 2, 3], seed=0), G(z, torch.tensor([1, 2, 3])))
    torch.testing.assert_close(
        G.sample(3, labels=torch.tensor([1, 2, 3])), G.sample(3, labels=[1, 2, 3])
    )
    with pytest.raises(ValueError, match=r"labels: 'zebra' is not a label index"):
        G.sample(2, labels="zebra")
    with pytest.raises(ValueError, match="2 conditions for n=3"):
        G.sample(3, labels=[1, 2])
    with pytest.raises(ValueError, match=r"in 0\.\.9"):
        G.sample(2, labels=torch.tensor([0, 10]))


def test_sample_labels_for_multi_label_models(runs, tmp_path: Path) -> None:
    G = load_generator(runs["multi"])
    names = G.label_names
    y = G.labels(None, 5, seed=1)
    assert y.shape == (5, 24) and ((y.sum(1) >= 1) & (y.sum(1) <= 3)).all()
    both = G.labels(f"{names[0]},{names[5]}", 2)
    assert both.shape == (2, 24) and both[:, [0, 5]].eq(1).all() and both.sum() == 4
    per = G.labels([[names[1]], [names[2], np.int64(3)]], 2)
    assert per[0].nonzero().flatten().tolist() == [1]
    assert per[1].nonzero().flatten().tolist() == [2, 3]
    x = G.sample(2, labels=[[names[1]], [names[2], 3]])
    assert x.shape == (2, 3, 16, 16)
    # `gandist sample --seed 3` draws the label sets G.sample(n, seed=3) does (the CLI always
    # drew them from seed 0)
    from gandist.sampling import sample

    out = sample(runs["multi"], 4, tmp_path / "x.npy", seed=3)
    torch.testing.assert_close(torch.from_numpy(np.load(out)), G.sample(4, seed=3))
    assert not torch.equal(G.labels(None, 4, seed=3), G.labels(None, 4, seed=4))
    with pytest.raises(ValueError, match=r"shape \(2, 24\)"):
        G.sample(2, labels=torch.zeros(2, 5))
