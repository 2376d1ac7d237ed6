"""Self-supervised pretraining of a sequence encoder, readable top to bottom (nanoGPT style).

:func:`pretrain` builds the encoder, heads, optimizer, schedule and data stream; restores the
last checkpoint if ``out_dir`` holds one; then for each step: for each micro-batch (gradient
accumulation) mask / augment on the device, forward under autocast, backward; clip; step the
optimizer and the schedule; log a row; evaluate; checkpoint. At the end the encoder is saved as
``model.safetensors`` + ``config.json`` (:func:`helixflow.models.encoders.save_encoder`, which
transfer learning loads) and the heads as ``heads.safetensors``.

GPU first: bf16 autocast on CUDA (fp16 with a gradient scaler, or fp32, on request), fused
AdamW, pinned-memory loading, masks drawn on the device, optional ``torch.compile``, and DDP when
launched by ``torchrun`` (WORLD_SIZE > 1; NCCL on CUDA, Gloo on CPU; one node or several). On a
CPU it runs the same code in fp32.

Exact resume: ``checkpoint.pt`` (written atomically every ``checkpoint_every`` steps and at the
end) holds the model, heads, optimizer, schedule, gradient scaler, the RNG states of python,
numpy, torch, CUDA and the masking generator of every rank, the step, the data position (epoch,
batch within it; the loader skips to it) and the metrics so far. A killed run re-run with the
same arguments continues from there and, on a CPU, ends with the same weights and metrics as a
run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from torch import nn

from .checkpoint import read_checkpoint, rng_state, set_rng_state, write_checkpoint
from .device import resolve_device
from .errors import InputError
from .files import atomic_path, read_json, write_json, write_tsv
from .markov import load_windows
from .models.encoders import build_encoder, n_parameters, save_encoder
from .objectives import (
    IGNORE,
    MLMHead,
    ProjectionHead,
    augment,
    combined_loss,
    info_nce,
    mask_tokens,
    mlm_loss,
    temperature_from_margin,
)
from .records import code_digest, write_record
from .seeding import seed_everything

Batches = Callable[[int, int], Iterable[dict]]   # (epoch, start_batch) -> batches of one epoch

METRIC_COLUMNS = ["step", "epoch", "tokens_seen", "loss", "mlm_loss", "mlm_accuracy",
                  "con_loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s", "valid_mlm_loss",
                  "valid_mlm_accuracy", "valid_con_loss"]


@dataclass
class PretrainConfig:
    """Pretraining settings; filled from the workflow's params (see :data:`DEFAULT_PARAMS`)."""

    # objectives: loss = w_mlm * MLM + w_con * InfoNCE
    w_mlm: float = 1.0
    w_con: float = 0.0
    mask_rate: float = 0.15
    mask_scheme: str = "80/10/10"          # "80/10/10" | "mask" | "random"
    mask_span: int = 1                     # tokens per masked span (>= k for overlapping k-mers)
    mutation_rate: float = 0.02            # contrastive views: per-base point mutations
    view_shift: int = 16                   # contrastive views: jitter crop, tokens
    view_rc_prob: float = 0.5              # contrastive views: reverse complement
    temperature: float | None = None       # None: the seeds' rule from the three targets below
    target_sp: float = 0.8
    target_sn: float = 0.0
    target_p0: float = 0.5
    proj_dim: int = 64
    # optimisation
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 15
    min_lr_ratio: float = 0.1              # cosine decays to lr * min_lr_ratio at the last step
    steps: int = 2000
    batch_size: int = 16                   # windows per micro-batch per rank
    accumulation: int = 1                  # micro-batches per optimizer step
    clip: float = 1.0                      # max gradient norm; 0 = no clipping
    precision: str = "auto"                # "auto" (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    compile: bool = False
    # data (the loader's own augmentation of each window)
    rc_prob: float = 0.5
    max_shift: int = 0                     # bp
    num_workers: int = 0
    # bookkeeping
    checkpoint_every: int = 100
    log_every: int = 20
    eval_every: int = 250                  # 0 = only at the end
    eval_windows: int = 256                # valid windows scored at each evaluation
    seed: int = 0
    threads: int = 1                       # CPU intra-op threads
    device: str = "auto"                   # "auto" | "cpu" | "cuda"


# The defaults pretrain on the yeast training chromosomes (7.6 Mb, 1-mer tokens, 512-bp windows)
# in about 3 minutes on one CPU thread (2.5 M tokens, a third of an epoch) and beat the k-mer
# baselines on held-out chromosomes (README, "Pretraining"). The dilated CNN runs 2.4x as many
# tokens/s as the transformer on a CPU; on a GPU raise steps, batch_size and the model size.
DEFAULT_PARAMS: dict[str, Any] = {**asdict(PretrainConfig()),
                                  "encoder": {"architecture": "dilated_cnn"}}


# --------------------------------------------------------------------------- model and loss

class PretrainModel(nn.Module):
    """The encoder and its pretraining heads; ``forward`` returns the losses of one batch.

    One module, so DDP sees a single forward (the MLM pass and the two contrastive views).
    A head whose objective has weight 0 is not built. The contrastive descriptor is the mean of
    one strand's features (windows are unpadded), not ``encoder.pooled``: with
    ``rc_invariant`` that would run each view twice and make the RC augmentation moot; here the
    RC views teach the invariance instead.
    """

    def __init__(self, encoder: nn.Module, w_mlm: float, w_con: float, proj_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.mlm_head = MLMHead(encoder.d_model, encoder.vocab_size) if w_mlm else None
        self.proj_head = ProjectionHead(encoder.d_model, proj_dim) if w_con else None

    def forward(self, inputs: torch.Tensor | None, labels: torch.Tensor | None,
                view1: torch.Tensor | None, view2: torch.Tensor | None,
                temperature: float) -> dict[str, torch.Tensor]:
        """Losses (and MLM hit counts) for masked ``inputs``/``labels`` shape=(B, L) and two
        contrastive views shape=(B, L')."""
        out = {}
        if self.mlm_head is not None:
            logits = self.mlm_head(self.encoder(inputs))
            picked = labels != IGNORE
            out["mlm"] = mlm_loss(logits, labels)
            out["mlm_correct"] = ((logits.argmax(-1) == labels) & picked).sum()
            out["mlm_count"] = picked.sum()
        if self.proj_head is not None:   # both views in one pass; mean over the window
            z = self.proj_head(self.encoder(torch.cat([view1, view2])).mean(1))
            out["con"] = info_nce(*z.chunk(2), temperature)
        return out


def make_inputs(tokens: torch.Tensor, cfg: PretrainConfig, generator: torch.Generator,
                vocab_size: int, k: int, stride: int) -> tuple:
    """Masked inputs, labels and two contrastive views of a batch (``None`` for an objective
    that is off), drawn from ``generator`` on the tokens' device."""
    inputs = labels = view1 = view2 = None
    if cfg.w_mlm:
        inputs, labels = mask_tokens(tokens, cfg.mask_rate, cfg.mask_scheme, cfg.mask_span,
                                     generator, vocab_size)
    if cfg.w_con:
        view1, view2 = (augment(tokens, cfg.mutation_rate, cfg.view_shift, cfg.view_rc_prob,
                                generator, k, stride) for _ in range(2))
    return inputs, labels, view1, view2


def lr_factor(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio``;
    ``step`` counts optimizer steps taken (0 for the first)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def contrastive_temperature(cfg: PretrainConfig) -> float:
    """The fixed temperature, or the seeds' rule for the per-rank batch (B - 1 negatives)."""
    if cfg.temperature is not None:
        return float(cfg.temperature)
    return temperature_from_margin(cfg.target_sp, cfg.target_sn, cfg.target_p0, cfg.batch_size)


# --------------------------------------------------------------------------- the loop

def pretrain(cfg: PretrainConfig, encoder_config: dict, corpus_manifest: str | Path | None,
             valid_manifest: str | Path | None, out_dir: str | Path,
             batches: Batches | None = None, valid_windows: np.ndarray | None = None,
             log: TextIO = sys.stderr) -> dict:
    """Pretrain an encoder on a token corpus; resume from ``out_dir/checkpoint.pt`` if present.

    ``batches(epoch, start_batch)`` yields the dicts ``{"tokens": LongTensor (B, L)}`` of one
    epoch from batch ``start_batch`` on, the same for the same arguments; by default the corpus
    loader (:func:`helixflow.loader.make_loader`) over ``corpus_manifest``. ``valid_windows``
    (int64 shape=(n, L)) default to ``cfg.eval_windows`` windows of ``valid_manifest`` (none:
    no evaluation). Writes model.safetensors, config.json, heads.safetensors, metrics.tsv,
    checkpoint.pt and summary.json into ``out_dir``; returns the summary.
    """
    _check(cfg)
    out_dir = Path(out_dir)
    rank, world, local_rank = _init_distributed()
    device = resolve_device(cfg.device, local_rank)
    precision = cfg.precision if cfg.precision != "auto" else (
        "bf16" if device.type == "cuda" else "fp32")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]

    # model, optimizer, schedule: built from the seed, identical on every rank
    seed_everything(cfg.seed, cfg.threads)
    if device.type == "cuda":
        torch.use_deterministic_algorithms(False)        # fused kernels; CPU runs stay exact
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    encoder = build_encoder(encoder_config)
    k, stride = encoder.config["k"], encoder.config["stride"]
    model = PretrainModel(encoder, cfg.w_mlm, cfg.w_con, cfg.proj_dim).to(device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98), fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    torch.manual_seed(cfg.seed + rank)                   # dropout differs between ranks
    mask_generator = torch.Generator(device).manual_seed(cfg.seed * 1000 + rank)
    temperature = contrastive_temperature(cfg) if cfg.w_con else float("nan")

    # resume
    state = {"step": 0, "epoch": 0, "batch": 0, "metrics": [], "running": _zero_running()}
    checkpoint_path = out_dir / "checkpoint.pt"
    resumed_from = 0
    fingerprint = _fingerprint(cfg, encoder_config, corpus_manifest)
    saved = read_checkpoint(checkpoint_path) if checkpoint_path.exists() else None
    if checkpoint_path.exists() and (saved or {}).get("fingerprint") != fingerprint:
        _say(rank, log, f"{checkpoint_path} was written with other settings, data or code: "
             "starting over")
    elif saved is not None:
        state = _load_checkpoint(checkpoint_path, saved, model, optimizer, scheduler, scaler,
                                 mask_generator, rank)
        resumed_from = state["step"]
        _say(rank, log, f"resuming from {checkpoint_path} at step {resumed_from}")

    # data
    if batches is None:
        if corpus_manifest is None:
            raise ValueError("give corpus_manifest or batches")
        batches = corpus_batches(corpus_manifest, cfg, rank, world, k, stride)
    if valid_windows is None and valid_manifest is not None and rank == 0:
        valid_windows = load_windows(valid_manifest, cfg.eval_windows)
    stream = BatchStream(batches, state["epoch"], state["batch"])

    # parallel and compiled views of the same model (saving always uses `model`)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    writer = _tensorboard(out_dir, state["step"]) if rank == 0 else None

    model.train()
    running, rows = state["running"], state["metrics"]
    step = state["step"]
    tic = time.time()
    if step < cfg.steps:
        _say(rank, log, f"pretraining {n_parameters(encoder):,}-parameter "
             f"{encoder.config['architecture']} on {device} ({precision}, world {world}): "
             f"steps {step + 1}..{cfg.steps}, {cfg.batch_size} windows x {cfg.accumulation} "
             f"micro-batches x {world} ranks per step")
    while step < cfg.steps:
        lr = scheduler.get_last_lr()[0]
        for micro in range(cfg.accumulation):
            tokens = next(stream)["tokens"].to(device, non_blocking=True)
            inputs, labels, view1, view2 = make_inputs(tokens, cfg, mask_generator,
                                                       encoder.vocab_size, k, stride)
            sync = micro == cfg.accumulation - 1 or world == 1
            with _no_sync(net, not sync), torch.autocast(
                    device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                out = net(inputs, labels, view1, view2, temperature)
                loss = combined_loss(out.get("mlm"), out.get("con"), cfg.w_mlm, cfg.w_con)
            scaler.scale(loss / cfg.accumulation).backward()
            _accumulate(running, loss, out, tokens.numel() * world)
        scaler.unscale_(optimizer)
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.clip or float("inf"))
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        running["grad_norm"] = running["grad_norm"].to(device) + grad_norm.detach().double()
        running["steps"] += 1

        evaluate_now = step == cfg.steps or bool(cfg.eval_every and step % cfg.eval_every == 0)
        if step % cfg.log_every == 0 or evaluate_now:
            row = _metrics_row(running, step, stream.epoch, lr, time.time() - tic, world, rows)
            if evaluate_now and rank == 0 and valid_windows is not None:
                row.update(evaluate(model, valid_windows, cfg, temperature, device,
                                    autocast_dtype))
            rows.append(row)
            running, tic = _zero_running(), time.time()
            if rank == 0:
                _progress(row, rows[-2]["step"] if len(rows) > 1 else resumed_from, cfg.steps,
                          log)
                write_tsv(out_dir / "metrics.tsv", pd.DataFrame(rows, columns=METRIC_COLUMNS))
                if writer is not None:
                    for key, value in row.items():
                        if key != "step" and np.isfinite(value):
                            writer.add_scalar(key, value, step)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_checkpoint(checkpoint_path, model, optimizer, scheduler, scaler,
                             mask_generator, rank, world, fingerprint=fingerprint,
                             step=step, epoch=stream.epoch,
                             batch=stream.position, metrics=rows, running=running)

    # final outputs (rank 0)
    summary = {}
    if rank == 0:
        save_encoder(encoder, out_dir)
        heads = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
                 if not k.startswith("encoder.")}
        with atomic_path(out_dir / "heads.safetensors") as tmp:
            save_file(heads, str(tmp), metadata={"w_mlm": str(cfg.w_mlm),
                                                 "w_con": str(cfg.w_con)})
        write_tsv(out_dir / "metrics.tsv", pd.DataFrame(rows, columns=METRIC_COLUMNS))
        last = rows[-1] if rows else {}
        summary = {"steps": cfg.steps, "resumed_from": resumed_from,
                   "tokens_seen": last.get("tokens_seen", 0), "epochs": stream.epoch,
                   "n_params": n_parameters(encoder), "n_params_heads": sum(
                       v.numel() for v in heads.values()),
                   "architecture": encoder.config["architecture"], "device": str(device),
                   "precision": precision, "world_size": world,
                   "temperature": temperature if cfg.w_con else None,
                   **{key: last.get(key) for key in ("loss", "mlm_loss", "mlm_accuracy",
                                                     "con_loss", "valid_mlm_loss",
                                                     "valid_mlm_accuracy", "valid_con_loss")},
                   "train_s": sum(r["elapsed_s"] for r in rows)}
        summary = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                   for k, v in summary.items()}                 # JSON has no NaN
        if summary["valid_mlm_loss"] is not None:
            summary["valid_mlm_perplexity"] = math.exp(summary["valid_mlm_loss"])
        write_json(out_dir / "summary.json", {**summary, "config": asdict(cfg),
                                              "encoder": encoder.config})
    if writer is not None:
        writer.close()
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


@torch.no_grad()
def evaluate(model: PretrainModel, windows: np.ndarray, cfg: PretrainConfig, temperature: float,
             device: torch.device, autocast_dtype: torch.dtype | None) -> dict[str, float]:
    """Valid MLM loss and accuracy (and InfoNCE) on ``windows`` with a fixed masking seed.

    Every picked token becomes [MASK] (scheme "mask", as in :mod:`helixflow.markov`'s
    diagnostics), so no kept-as-is token makes the loss look better than it is.
    """
    was_training = model.training
    model.eval()
    cfg = replace(cfg, mask_scheme="mask")
    generator = torch.Generator().manual_seed(cfg.seed + 7919)
    k, stride = model.encoder.config["k"], model.encoder.config["stride"]
    sums = {"mlm": 0.0, "correct": 0, "count": 0, "con": 0.0, "con_batches": 0}
    for start in range(0, len(windows), cfg.batch_size):
        tokens = torch.from_numpy(np.asarray(windows[start:start + cfg.batch_size], np.int64))
        batch = make_inputs(tokens, cfg, generator, model.encoder.vocab_size, k, stride)
        batch = [None if t is None else t.to(device) for t in batch]
        if cfg.w_con and len(tokens) < 2:
            batch[2] = batch[3] = None
        with torch.autocast(device.type, dtype=autocast_dtype,
                            enabled=autocast_dtype is not None):
            out = model(*batch, temperature)
        if "mlm" in out:
            sums["mlm"] += out["mlm"].item() * out["mlm_count"].item()
            sums["correct"] += out["mlm_correct"].item()
            sums["count"] += out["mlm_count"].item()
        if "con" in out:
            sums["con"] += out["con"].item()
            sums["con_batches"] += 1
    model.train(was_training)
    nan = float("nan")
    return {"valid_mlm_loss": sums["mlm"] / sums["count"] if sums["count"] else nan,
            "valid_mlm_accuracy": sums["correct"] / sums["count"] if sums["count"] else nan,
            "valid_con_loss": sums["con"] / sums["con_batches"] if sums["con_batches"] else nan}


# --------------------------------------------------------------------------- data

class BatchStream(Iterator[dict]):
    """Endless batches across epochs from ``batches(epoch, start_batch)``; ``epoch`` and
    ``position`` (batches of the current epoch consumed) are the data position to resume at.

    Fetching runs under a fork of torch's global RNG: a DataLoader draws a seed from it each
    time an epoch's iterator starts, and a resumed run starts one more iterator than an
    uninterrupted one, which would shift the dropout stream.
    """

    def __init__(self, batches: Batches, epoch: int = 0, position: int = 0) -> None:
        self.batches, self.epoch, self.position = batches, epoch, position
        self._it: Iterator[dict] | None = None

    def __next__(self) -> dict:
        with torch.random.fork_rng(devices=[]):
            return self._next()

    def _next(self) -> dict:
        while True:
            if self._it is None:
                self._it = iter(self.batches(self.epoch, self.position))
            try:
                batch = next(self._it)
            except StopIteration:
                if self.position == 0:
                    raise InputError(f"epoch {self.epoch} yields no batch",
                                     fix="use a smaller batch_size or a larger corpus") from None
                self.epoch, self.position, self._it = self.epoch + 1, 0, None
                continue
            self.position += 1
            return batch


def corpus_batches(manifest: str | Path, cfg: PretrainConfig, rank: int, world: int, k: int,
                   stride: int) -> Batches:
    """The corpus loader as a ``batches(epoch, start_batch)`` callable (full batches only)."""
    from .loader import make_loader

    tok = read_json(manifest)["tokenizer"]
    if (tok["k"], tok["stride"]) != (k, stride):
        raise InputError(f"the corpus has k={tok['k']}, stride={tok['stride']} tokens but the "
                         f"encoder reads k={k}, stride={stride}", path=manifest,
                         fix="set the encoder's k and stride to the corpus tokenizer's")
    verified = []

    def batches(epoch: int, start_batch: int) -> Iterable[dict]:
        loader = make_loader(manifest, cfg.batch_size, cfg.seed, epoch=epoch, rank=rank,
                             world_size=world, rc_prob=cfg.rc_prob, max_shift=cfg.max_shift,
                             output="tokens", num_workers=cfg.num_workers,
                             start_batch=start_batch, drop_last=True, verify=not verified)
        verified.append(True)                           # check the shards' sha256 once a run
        return loader

    return batches


# --------------------------------------------------------------------------- bookkeeping

def _check(cfg: PretrainConfig) -> None:
    if not (cfg.w_mlm or cfg.w_con) or cfg.w_mlm < 0 or cfg.w_con < 0:
        raise ValueError(f"objective weights must be >= 0 with one > 0, got w_mlm={cfg.w_mlm}, "
                         f"w_con={cfg.w_con}")
    if cfg.precision not in ("auto", "bf16", "fp16", "fp32"):
        raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {cfg.precision!r}")
    for name in ("steps", "batch_size", "accumulation", "checkpoint_every", "log_every"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.warmup_steps < 1:
        raise ValueError("warmup_steps must be >= 1")


def _init_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; starts the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend)
    return torch.distributed.get_rank(), world, local_rank



def _no_sync(net: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` for the micro-batches before the last; a no-op otherwise."""
    inner = getattr(net, "_orig_mod", net)
    return inner.no_sync() if skip and hasattr(inner, "no_sync") else contextlib.nullcontext()


def _zero_running() -> dict:
    """Sums since the last metrics row; tensors stay on the device (no sync per step)."""
    sums = {key: torch.zeros((), dtype=torch.float64)
            for key in ("loss", "mlm", "con", "correct", "count", "grad_norm")}
    return {**sums, "micro": 0, "steps": 0, "tokens": 0}


def _accumulate(running: dict, loss: torch.Tensor, out: dict, tokens: int) -> None:
    """Add one micro-batch's losses and MLM hits to the running sums."""
    add = {"loss": loss, "mlm": out.get("mlm"), "con": out.get("con"),
           "correct": out.get("mlm_correct"), "count": out.get("mlm_count")}
    for key, value in add.items():
        if value is not None:
            running[key] = running[key].to(value.device) + value.detach().double()
    running["micro"] += 1
    running["tokens"] += tokens


def _metrics_row(running: dict, step: int, epoch: int, lr: float, elapsed: float, world: int,
                 rows: list[dict]) -> dict:
    """Means since the last row (averaged over ranks under DDP); valid columns left empty."""
    sums = torch.stack([running[key].double().to(running["loss"].device)
                        for key in ("loss", "mlm", "con", "correct", "count", "grad_norm")])
    if world > 1:
        torch.distributed.all_reduce(sums)
        sums = sums / world
    loss, mlm, con, correct, count, grad_norm = sums.cpu().tolist()
    micro, steps = max(running["micro"], 1), max(running["steps"], 1)
    nan = float("nan")
    return {"step": step, "epoch": epoch,
            "tokens_seen": (rows[-1]["tokens_seen"] if rows else 0) + running["tokens"],
            "loss": loss / micro, "mlm_loss": mlm / micro if count else nan,
            "mlm_accuracy": correct / count if count else nan,
            "con_loss": con / micro if con else nan, "lr": lr, "grad_norm": grad_norm / steps,
            "tokens_per_s": running["tokens"] / max(elapsed, 1e-9), "elapsed_s": elapsed,
            "valid_mlm_loss": nan, "valid_mlm_accuracy": nan, "valid_con_loss": nan}


def _progress(row: dict, previous_step: int, steps: int, log: TextIO) -> None:
    """One line per metrics row: losses, learning rate, throughput, time left."""
    per_step = row["elapsed_s"] / max(row["step"] - previous_step, 1)
    left = per_step * (steps - row["step"])
    parts = [f"step {row['step']:>6}/{steps}", f"epoch {row['epoch']}",
             f"loss {row['loss']:.4f}"]
    if np.isfinite(row["mlm_loss"]):
        parts.append(f"mlm {row['mlm_loss']:.4f} acc {row['mlm_accuracy']:.3f}")
    if np.isfinite(row["con_loss"]):
        parts.append(f"nce {row['con_loss']:.4f}")
    parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['tokens_per_s']:,.0f} tok/s")
    parts.append(f"eta {int(left // 60)}m{int(left % 60):02d}s")
    if np.isfinite(row["valid_mlm_loss"]):
        parts.append(f"valid mlm {row['valid_mlm_loss']:.4f} "
                     f"acc {row['valid_mlm_accuracy']:.3f}")
    print("  ".join(parts), file=log, flush=True)


def _say(rank: int, log: TextIO, message: str) -> None:
    if rank == 0:
        print(message, file=log, flush=True)


def _tensorboard(out_dir: Path, step: int):
    """A TensorBoard writer under out_dir/tensorboard when tensorboard is installed, else None;
    events after ``step`` from an interrupted run are purged."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"), purge_step=step or None)


def _save_checkpoint(path: Path, model: PretrainModel, optimizer, scheduler, scaler,
                     mask_generator: torch.Generator, rank: int, world: int, **position) -> None:
    """Everything needed to continue exactly, written atomically by rank 0."""
    rng = [rng_state([mask_generator])]
    if world > 1:
        rng = [None] * world
        torch.distributed.all_gather_object(rng, rng_state([mask_generator]))
    if rank == 0:
        running = {k: (v.cpu() if torch.is_tensor(v) else v)
                   for k, v in position.pop("running").items()}
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                 "rng": rng, "running": running, **position}
        write_checkpoint(path, state)
    if world > 1:
        torch.distributed.barrier()


# The library modules a pretraining run may execute: this one and every helixflow module it
# imports, transitively, found from the import graph (bookkeeping aside: file I/O, errors,
# records, this digest's own code, the packages' __init__). Their source is part of the
# checkpoint's fingerprint, so changed code starts over instead of resuming, or returning,
# weights that the old code trained.
from .code_graph import module_closure  # noqa: E402  (beside its one use)

PRETRAIN_CODE = tuple(m for m in module_closure("pretrain") if m not in (
    "errors", "files", "records", "code_graph", "__init__", "models/__init__"))


def _fingerprint(cfg: PretrainConfig, encoder_config: dict,
                 corpus_manifest: str | Path | None) -> str:
    """Digest of what a run depends on (settings, data, code); a checkpoint of anything else
    is not resumed.

    Bookkeeping that does not change the result (logging and checkpoint intervals) is left out.
    """
    settings = {k: v for k, v in asdict(cfg).items()
                if k not in ("log_every", "checkpoint_every", "threads")}
    shards = read_json(corpus_manifest)["shards"] if corpus_manifest else None
    text = json.dumps([settings, encoder_config, shards, code_digest(*PRETRAIN_CODE)],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _load_checkpoint(path: Path, state: dict, model: PretrainModel, optimizer, scheduler,
                     scaler, mask_generator: torch.Generator, rank: int) -> dict:
    """Restore ``state`` (read from ``path``) into the model, optimiser, schedule and RNGs."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, EOFError) as err:
        raise InputError(f"cannot resume from this checkpoint ({err})", path=path,
                         fix="it belongs to another model or config; delete it to start over"
                         ) from err
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    if rank >= len(rng):
        raise InputError(f"the checkpoint holds RNG states of {len(rng)} ranks; this is rank "
                         f"{rank}", path=path, fix="resume with the same number of processes")
    set_rng_state(rng[rank], [mask_generator])
    return {"step": state["step"], "epoch": state["epoch"], "batch": state["batch"],
            "metrics": state["metrics"], "running": state["running"]}


# --------------------------------------------------------------------------- workflow entry

def make_config(params: dict) -> tuple[PretrainConfig, dict]:
    """(PretrainConfig, encoder config) from the workflow's params; unknown keys are errors."""
    p = dict(params)
    encoder = dict(p.pop("encoder", {}) or {})
    known = {f.name for f in fields(PretrainConfig)}
    unknown = sorted(set(p) - known)
    if unknown:
        raise ValueError(f"unknown pretraining param(s) {unknown}; known: {sorted(known)}")
    return PretrainConfig(**p), encoder


def run_pretrain(corpus_manifest: str | Path, valid_manifest: str | Path | None,
                 out_dir: str | Path, params: dict | None = None) -> dict:
    """Pretrain an encoder on a corpus (:mod:`helixflow.corpus`); the workflow's entry point.

    ``params``: :data:`DEFAULT_PARAMS` keys (the :class:`PretrainConfig` fields plus
    ``encoder``, a dict for :func:`helixflow.models.encoders.build_encoder`; its k and stride
    default to the corpus tokenizer's). Resumes from ``out_dir/checkpoint.pt`` when present.
    Writes into ``out_dir``: model.safetensors + config.json (the encoder), heads.safetensors,
    metrics.tsv, summary.json, record.json, checkpoint.pt. Returns the summary.
    """
    cfg, encoder_cfg = make_config({**DEFAULT_PARAMS, **(params or {})})
    tok = read_json(corpus_manifest)["tokenizer"]
    encoder_cfg = {"k": tok["k"], "stride": tok["stride"], **encoder_cfg}
    summary = pretrain(cfg, encoder_cfg, corpus_manifest, valid_manifest, out_dir)
    if summary:
        inputs = {"corpus_manifest": corpus_manifest}
        if valid_manifest is not None:
            inputs["valid_manifest"] = valid_manifest
        write_record(Path(out_dir) / "record.json", "pretrain",
                     {**asdict(cfg), "encoder": encoder_cfg}, inputs, summary)
    return summary
