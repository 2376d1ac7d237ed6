"""Write the synthetic hg38-shaped genome, blacklist, peaks and sample sheet (issue 13).

    python benchmarks/simulate_genome.py --out data/hg38_scale --scale 1/64 --seed 1
    python benchmarks/simulate_genome.py --out data/hg38_scale --scale 1 --targets CTCF,REST

Progress goes to stderr; the manifest (without the per-sequence lengths) and the wall time
to stdout. See helixflow.simulate_genome for the model and
config/examples/hg38_scale/config.yaml for running the workflow on the result.
"""

from __future__ import annotations

import argparse
import json
import time

from helixflow.simulate_genome import TARGETS, parse_scale, simulate


def scale_type(text: str) -> float:
    """argparse type: the scale as a float in (0, 1] (helixflow.simulate_genome.parse_scale)."""
    try:
        return float(parse_scale(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory (the data mirror)")
    parser.add_argument("--scale", type=scale_type, default=1 / 64,
                        help="fraction of hg38's size: 1/64, 1/8, 1/2, 1 (default 1/64)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--targets", default=None,
                        help=f"comma-separated subset of {','.join(TARGETS)} (default: all)")
    parser.add_argument("--compresslevel", type=int, default=1, choices=range(0, 10),
                        metavar="0-9", help="gzip level (default 1, fastest)")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets \
        else None
    start = time.perf_counter()
    manifest = simulate(args.out, args.scale, args.seed, targets, args.compresslevel)
    shown = {**manifest, "genome": {k: v for k, v in manifest["genome"].items()
                                    if k != "sequences"}}
    print(json.dumps(shown, indent=2))
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return manifest


if __name__ == "__main__":
    main()
