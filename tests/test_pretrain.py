"""Pretraining loop: outputs, schedule, learning a planted pattern, exact resume after a crash
or a SIGKILL, mixed precision on CPU, and DDP over two CPU processes (torchrun, gloo)."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from helixflow.models.encoders import load_encoder
from helixflow.objectives import N_SPECIALS
from helixflow.pretrain import BatchStream, PretrainConfig, lr_factor, pretrain

TINY = {"architecture": "transformer", "k": 1, "stride": 1, "d_model": 16, "n_layers": 1,
        "n_heads": 2, "mlp_ratio": 2, "dropout": 0.1}
DETERMINISTIC = ["step", "epoch", "tokens_seen", "loss", "mlm_loss", "mlm_accuracy", "con_loss",
                 "lr", "grad_norm", "valid_mlm_loss", "valid_mlm_accuracy", "valid_con_loss"]


def periodic_windows(n: int, length: int, seed: int) -> np.ndarray:
    """Windows of the repeat ACGTTGCA... at a random phase: a masked base is predictable from
    its neighbours, so a model that learns anything gets far above 25% accuracy."""
    motif = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    phase = np.random.default_rng(seed).integers(0, 8, n)
    return motif[(phase[:, None] + np.arange(length)) % 8] + N_SPECIALS


class SyntheticBatches:
    """``batches(epoch, start_batch)`` over fixed windows, shuffled per (seed, epoch);
    ``fail_after`` batches in total (across calls) it raises, like a crashed job."""

    def __init__(self, windows: np.ndarray, batch_size: int, seed: int = 0,
                 fail_after: int | None = None, delay: float = 0.0) -> None:
        self.windows, self.batch_size, self.seed = windows, batch_size, seed
        self.fail_after, self.delay, self.served = fail_after, delay, 0

    def __call__(self, epoch: int, start_batch: int):
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.windows))
        for b in range(start_batch, len(order) // self.batch_size):
            if self.fail_after is not None and self.served >= self.fail_after:
                raise RuntimeError("simulated crash")
            self.served += 1
            time.sleep(self.delay)
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield {"tokens": torch.from_numpy(self.windows[idx])}


def config(**changes) -> PretrainConfig:
    base = {"steps": 8, "batch_size": 4, "accumulation": 2, "warmup_steps": 2, "lr": 3e-3,
            "checkpoint_every": 3, "log_every": 2, "eval_every": 4, "w_mlm": 1.0, "w_con": 0.5,
            "view_shift": 4, "mutation_rate": 0.05, "threads": 1, "seed": 3}
    return PretrainConfig(**{**base, **changes})


def run(cfg, out_dir, batches, valid):
    return pretrain(cfg, TINY, None, None, out_dir, batches=batches, valid_windows=valid,
                    log=io.StringIO())


def same_outputs(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    ha, hb = load_file(str(a / "heads.safetensors")), load_file(str(b / "heads.safetensors"))
    assert all(torch.equal(ha[key], hb[key]) for key in ha)
    ma, mb = (pd.read_csv(p / "metrics.tsv", sep="\t")[DETERMINISTIC] for p in (a, b))
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)


@pytest.fixture
def data():
    return periodic_windows(64, 24, 0), periodic_windows(16, 24, 1)


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = PretrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(np.diff(factors[10:]) <= 0)
    assert factors[55] == pytest.approx(0.1 + 0.9 * 0.5)   # half-way through the cosine
    assert lr_factor(100, cfg) == pytest.approx(0.1)


def test_batch_stream_crosses_epochs_and_resumes_mid_epoch(data):
    windows = data[0][:12]
    batches = SyntheticBatches(windows, 4)                  # 3 batches per epoch
    stream = BatchStream(batches)
    seen = [next(stream)["tokens"] for _ in range(7)]
    assert (stream.epoch, stream.position) == (2, 1)
    resumed = BatchStream(batches, epoch=1, position=2)
    assert torch.equal(next(resumed)["tokens"], seen[5])


def test_outputs_and_learning_a_planted_pattern(data, tmp_path, restore_torch_state):
    train, valid = data
    cfg = config(steps=120, w_con=0.0, accumulation=1, batch_size=8, eval_every=60,
                 log_every=20, checkpoint_every=60, lr=1e-2, warmup_steps=5)
    summary = run(cfg, tmp_path, SyntheticBatches(train, 8), valid)
    for name in ("model.safetensors", "config.json", "heads.safetensors", "metrics.tsv",
                 "checkpoint.pt", "summary.json"):
        assert (tmp_path / name).is_file(), name
    metrics = pd.read_csv(tmp_path / "metrics.tsv", sep="\t")
    assert list(metrics["step"]) == [20, 40, 60, 80, 100, 120]
    assert metrics["tokens_seen"].iloc[-1] == 120 * 8 * 24
    assert metrics["valid_mlm_loss"].notna().sum() == 2       # evaluated at steps 60 and 120
    assert summary["valid_mlm_accuracy"] > 0.8                # chance is 0.25
    encoder = load_encoder(tmp_path)                          # transfer can load it
    assert encoder.config["d_model"] == 16


def test_exact_resume_after_a_crash(data, tmp_path, restore_torch_state):
    train, valid = data
    cfg = config()
    run(cfg, tmp_path / "straight", SyntheticBatches(train, 4), valid)
    # 2 micro-batches a step: the crash comes inside step 6, after the checkpoint of step 3
    crashing = SyntheticBatches(train, 4, fail_after=11)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, tmp_path / "crashed", crashing, valid)
    assert torch.load(tmp_path / "crashed" / "checkpoint.pt", weights_only=True)["step"] == 3
    summary = run(cfg, tmp_path / "crashed", SyntheticBatches(train, 4), valid)
    assert summary["resumed_from"] == 3
    same_outputs(tmp_path / "straight", tmp_path / "crashed")


KILLED_RUN = """
import sys, os
sys.path.insert(0, {tests!r})
from test_pretrain import SyntheticBatches, config, periodic_windows, run
run(config(steps=40, checkpoint_every=5), {out!r},
    SyntheticBatches(periodic_windows(64, 24, 0), 4, delay=0.05), periodic_windows(16, 24, 1))
"""


def test_sigkill_then_rerun_matches_an_uninterrupted_run(data, tmp_path, restore_torch_state):
    train, valid = data
    out = tmp_path / "killed"
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(KILLED_RUN.format(tests=str(Path(__file__).parent),
                                                        out=str(out))))
    job = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.DEVNULL)
    checkpoint = out / "checkpoint.pt"
    hang_guard = time.monotonic() + 600      # only against a hung job: nothing here is timed
    while job.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["step"] >= 10:
            break
        if time.monotonic() > hang_guard:
            job.kill()
            job.wait()
            pytest.fail("the job wrote no checkpoint at step >= 10 in 10 minutes: hung?")
        time.sleep(0.1)
    assert job.poll() is None, "the job ended before it could be killed"
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    killed_at = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 10 <= killed_at < 40
    cfg = config(steps=40, checkpoint_every=5)
    summary = run(cfg, out, SyntheticBatches(train, 4), valid)
    assert summary["resumed_from"] == killed_at
    run(cfg, tmp_path / "straight", SyntheticBatches(train, 4), valid)
    same_outputs(tmp_path / "straight", out)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cpu(precision, data, tmp_path, restore_torch_state):
    train, valid = data
    summary = run(config(steps=2, precision=precision), tmp_path, SyntheticBatches(train, 4),
                  valid)
    assert summary["precision"] == precision and np.isfinite(summary["loss"])


def test_rerunning_a_finished_job_changes_nothing(data, tmp_path, restore_torch_state):
    train, valid = data
    run(config(steps=3), tmp_path, SyntheticBatches(train, 4), valid)
    before = (tmp_path / "metrics.tsv").read_text()
    summary = run(config(steps=3), tmp_path, SyntheticBatches(train, 4, fail_after=0), valid)
    assert summary["resumed_from"] == 3 and (tmp_path / "metrics.tsv").read_text() == before


DDP_RUN = """
import sys, os
sys.path.insert(0, {tests!r})
from test_pretrain import SyntheticBatches, config, periodic_windows, run
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
windows = periodic_windows(64, 24, 0)[rank::world]        # each rank its own half
summary = run(config(steps=4, checkpoint_every=2), {out!r}, SyntheticBatches(windows, 4),
              periodic_windows(16, 24, 1))
if rank == 0:
    print("WORLD", summary["world_size"])
"""


def test_ddp_two_cpu_processes(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_RUN.format(tests=str(Path(__file__).parent), out=str(tmp_path / "o")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", "2", str(script)], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WORLD 2" in result.stdout
    checkpoint = torch.load(tmp_path / "o" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 4 and len(checkpoint["rng"]) == 2
    metrics = pd.read_csv(tmp_path / "o" / "metrics.tsv", sep="\t")
    assert metrics["tokens_seen"].iloc[-1] == 4 * 2 * 4 * 24 * 2   # steps x accum x B x L x ranks


def test_exact_resume_with_the_corpus_loader(tmp_path, restore_torch_state):
    """The real data path: corpus shards, the loader's seeded shuffling, RC and shift, and its
    start_batch skip on resume."""
    from test_markov import write_genome

    from helixflow.corpus import build_corpus
    from helixflow.genome import index_genome
    from helixflow.pretrain import corpus_batches, make_config, run_pretrain
    from helixflow.tokenize import Tokenizer

    write_genome(tmp_path / "raw.fa")
    index_genome(tmp_path / "raw.fa", tmp_path / "g.fa", tmp_path / "sizes")
    build_corpus(tmp_path / "g.fa", ["chrA", "chrB"], tmp_path / "corpus", Tokenizer(1, 1), 64,
                 64, 0.1, 100, workers=1)                # 186 windows: 11 batches an epoch
    manifest = tmp_path / "corpus" / "manifest.json"
    params = {"steps": 12, "batch_size": 16, "accumulation": 2, "checkpoint_every": 5,
              "log_every": 3, "eval_every": 0, "max_shift": 8, "w_con": 0.3, "view_shift": 4,
              "encoder": {"architecture": "dilated_cnn", "d_model": 16, "n_layers": 2,
                          "dropout": 0.1}}
    run_pretrain(manifest, None, tmp_path / "straight", params)

    cfg, encoder_cfg = make_config(params)
    encoder_cfg = {**encoder_cfg, "k": 1, "stride": 1}
    loader = corpus_batches(manifest, cfg, 0, 1, 1, 1)
    served = []

    def crashing(epoch, start_batch):
        for batch in loader(epoch, start_batch):
            if len(served) == 15:                     # inside step 8, after the step-5 checkpoint
                raise RuntimeError("simulated crash")
            served.append(1)
            yield batch

    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(cfg, encoder_cfg, manifest, None, tmp_path / "resumed", batches=crashing,
                 log=io.StringIO())
    summary = run_pretrain(manifest, None, tmp_path / "resumed", params)
    assert summary["resumed_from"] == 5 and summary["epochs"] == 2   # 24 batches, 3 epochs
    same_outputs(tmp_path / "straight", tmp_path / "resumed")


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    """A checkpoint left by a run with other settings starts over instead of resuming."""
    from test_markov import write_genome

    from helixflow.corpus import build_corpus
    from helixflow.genome import index_genome
    from helixflow.pretrain import run_pretrain
    from helixflow.tokenize import Tokenizer

    write_genome(tmp_path / "raw.fa")
    index_genome(tmp_path / "raw.fa", tmp_path / "g.fa", tmp_path / "sizes")
    build_corpus(tmp_path / "g.fa", ["chrA", "chrB"], tmp_path / "corpus", Tokenizer(1, 1), 64,
                 64, 0.1, 100, workers=1)
    manifest = tmp_path / "corpus" / "manifest.json"
    params = {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 2,
              "eval_every": 0, "encoder": {"architecture": "dilated_cnn", "d_model": 8,
                                           "n_layers": 1}}
    run_pretrain(manifest, None, tmp_path / "out", params)
    again = run_pretrain(manifest, None, tmp_path / "out", {**params, "lr": 1e-4})
    assert again["resumed_from"] == 0
    same = run_pretrain(manifest, None, tmp_path / "out", {**params, "lr": 1e-4})
    assert same["resumed_from"] == 4
    with pytest.MonkeyPatch.context() as patch:                 # as if the code were edited
        patch.setattr("helixflow.pretrain.code_digest", lambda *modules: "edited")
        edited = run_pretrain(manifest, None, tmp_path / "out", {**params, "lr": 1e-4})
    assert edited["resumed_from"] == 0


def test_fingerprinted_code_names_every_module_pretraining_runs():
    """PRETRAIN_CODE is derived from the import graph: pretrain.py's transitive closure, the
    bookkeeping modules aside; the graph misses none of the modules pretraining really loads."""
    code = """
import sys, helixflow.pretrain, helixflow.loader, helixflow.corpus
print(' '.join(m for m in sys.modules if m.startswith('helixflow.')))
"""
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    from helixflow.code_graph import module_closure, resolve
    from helixflow.pretrain import PRETRAIN_CODE
    closure = set(module_closure("pretrain"))
    ran = {resolve(m) for m in loaded}
    assert None not in ran and ran <= closure, ran - closure
    helpers = {"errors", "files", "records", "code_graph", "__init__", "models/__init__"}
    assert set(PRETRAIN_CODE) == closure - helpers
    assert {"pretrain", "loader", "corpus", "objectives", "models/encoders"} <= set(PRETRAIN_CODE)
