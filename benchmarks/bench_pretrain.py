"""Pretraining throughput of each encoder: tokens/s, and on a GPU achieved TFLOP/s and MFU.

    python benchmarks/bench_pretrain.py                        # CPU, both encoders
    python benchmarks/bench_pretrain.py --device cuda          # GPU, bf16 autocast
    python benchmarks/bench_pretrain.py --device cuda --compile --batch-size 128

Each row times whole optimizer steps of the real pretraining pieces
(:class:`helixflow.pretrain.PretrainModel`, masking on the device, autocast, backward, gradient
clipping, AdamW) on random tokens, after warm-up steps; data loading is not included (the
data-layer benchmark measures it). Numbers are measured in this one run on this machine.

FLOPs per token (the PaLM convention, Chowdhery et al. 2022, appendix B):

    6 * N  +  12 * n_layers * L * d_model          (forward + backward = 3 x forward)

N = parameters that take part in matrix products once per token: every parameter of the
encoder and the MLM head except the embedding table (a lookup, no FLOPs). A linear layer of
N_l weights costs 2 N_l FLOPs per token forward and 4 N_l backward; a convolution with 'same'
padding applies each weight once per position, so the dilated CNN obeys the same 6 N.
Attention adds, per layer and token, 2 L d_model for Q K^T and 2 L d_model for the weighted sum
of V forward (x 3 with backward) for the transformer; the dilated CNN has no attention term.
RC-equivariant (strand-averaged) encoders run twice and count twice. Model FLOPs utilisation
(MFU) = achieved FLOP/s / the device's peak dense bf16 (or fp32) FLOP/s (--peak-tflops, else a
table of published peaks by device name, e.g. H100 SXM 989 TFLOP/s bf16 dense).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from helixflow.models.encoders import build_encoder
from helixflow.pretrain import PretrainConfig, PretrainModel, make_inputs

PEAK_TFLOPS = {  # published dense peaks, TFLOP/s: (bf16/fp16, tf32/fp32)
    "H100": (989.0, 494.0), "H200": (989.0, 494.0), "A100": (312.0, 156.0),
    "L40S": (362.0, 183.0), "A10": (125.0, 62.5), "V100": (125.0, 15.7),
}
ENCODERS = {
    "transformer": {"architecture": "transformer", "d_model": 128, "n_layers": 4, "n_heads": 4},
    "dilated_cnn": {"architecture": "dilated_cnn", "d_model": 128, "n_layers": 6},
}


def matmul_params(model: nn.Module) -> int:
    """Parameters used in matrix products once per token (all but embedding tables)."""
    embedding = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    embedding += sum(p.numel() for n, p in model.named_parameters()
                     if n.endswith("embed.weight") and not isinstance(
                         model.get_submodule(n.rsplit(".", 1)[0]), nn.Embedding))
    return sum(p.numel() for p in model.parameters()) - embedding


def flops_per_token(model: PretrainModel, length: int) -> float:
    """6 N + 12 n_layers L d_model (see the module docstring)."""
    cfg = model.encoder.config
    attention = (12 * cfg["n_layers"] * length * cfg["d_model"]
                 if cfg["architecture"] == "transformer" else 0)
    head = sum(p.numel() for p in model.mlm_head.parameters())
    encoder = matmul_params(model.encoder)
    strands = 2 if cfg.get("rc_equivariant") else 1
    return strands * (6 * encoder + attention) + 6 * head


def peak_tflops(device: torch.device, precision: str, given: float | None) -> float | None:
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (half, single) in PEAK_TFLOPS.items():
        if key in name:
            return half if precision in ("bf16", "fp16") else single
    return None


def bench(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    enc_cfg = {**ENCODERS[name], "k": args.k, "stride": 1,
               "rc_equivariant": args.rc_equivariant}
    for key in ("d_model", "n_layers", "n_heads"):
        if getattr(args, key) and (key != "n_heads" or name == "transformer"):
            enc_cfg[key] = getattr(args, key)
    encoder = build_encoder(enc_cfg)
    model = PretrainModel(encoder, 1.0, 0.0, 64).to(device)
    cfg = PretrainConfig(batch_size=args.batch_size, mask_rate=0.15)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[args.precision]
    net = torch.compile(model) if args.compile else model
    generator = torch.Generator(device).manual_seed(0)
    tokens = torch.randint(5, encoder.vocab_size, (args.batch_size, args.length), device=device)

    def step() -> None:
        inputs, labels, _, _ = make_inputs(tokens, cfg, generator, encoder.vocab_size, args.k, 1)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = net(inputs, labels, None, None, 1.0)["mlm"]
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    tic = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - tic
    tokens_per_s = args.batch_size * args.length * args.steps / seconds
    fpt = flops_per_token(model, args.length)
    achieved = fpt * tokens_per_s / 1e12
    peak = peak_tflops(device, args.precision, args.peak_tflops)
    return {"encoder": name, "params": sum(p.numel() for p in encoder.parameters()),
            "mflop_per_token": fpt / 1e6, "tokens_per_s": tokens_per_s,
            "windows_per_s": tokens_per_s / args.length, "tflops": achieved,
            "mfu": achieved / peak if peak else None, "ms_per_step": 1e3 * seconds / args.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--encoders", default="transformer,dilated_cnn")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="windows per step (default 16 on CPU, 128 on CUDA)")
    parser.add_argument("--length", type=int, default=512, help="tokens per window")
    parser.add_argument("--k", type=int, default=1, help="k-mer size of the tokens")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (5 CPU, 50 CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (2 CPU, 10 CUDA)")
    parser.add_argument("--precision", default=None, choices=["bf16", "fp16", "fp32"],
                        help="autocast (default bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--rc-equivariant", action="store_true")
    parser.add_argument("--d-model", type=int, default=None, help="width (default 128)")
    parser.add_argument("--n-layers", type=int, default=None,
                        help="layers (default 4 transformer, 6 dilated CNN)")
    parser.add_argument("--n-heads", type=int, default=None, help="attention heads (default 4)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak TFLOP/s for MFU (default: by GPU name)")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no GPU")
    args.batch_size = args.batch_size or (128 if cuda else 16)
    args.steps = args.steps or (50 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
    args.precision = args.precision or ("bf16" if cuda else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    device = torch.device("cuda" if cuda else "cpu")
    where = (torch.cuda.get_device_name(device) if cuda
             else f"CPU, {torch.get_num_threads()} threads")
    width = f"d_model {args.d_model or 128}, layers {args.n_layers or 'default'}; "
    print(f"# pretraining throughput (MLM step: forward, backward, clip, AdamW) on {where}; "
          f"{width}"
          f"{args.batch_size} windows x {args.length} tokens (k={args.k}), {args.precision}"
          f"{', compiled' if args.compile else ''}; {args.steps} timed steps after "
          f"{args.warmup} warm-up; torch {torch.__version__}")
    rows = [bench(name, args, device) for name in args.encoders.split(",")]
    header = ("encoder", "params", "MFLOP/token", "tokens/s", "windows/s", "ms/step",
              "TFLOP/s", "MFU")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"| {r['encoder']} | {r['params']:,} | {r['mflop_per_token']:.2f} | "
              f"{r['tokens_per_s']:,.0f} | {r['windows_per_s']:,.1f} | {r['ms_per_step']:.1f} | "
              f"{r['tflops']:.3f} | {mfu} |")


if __name__ == "__main__":
    main()
