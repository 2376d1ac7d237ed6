"""Write the sequence-table example's inputs from the yeast data the default already uses.

Stb5 is a yeast factor outside the default's five, with 219 ChIP-exo peaks (Rossi et al.
2021): few labels, the case a published benchmark set often is. Its input here is what such
a set looks like, a FASTA of positives: 200 bp centred on each peak, cut from sacCer3.
HelixFlow makes one dinucleotide-shuffled negative per positive and splits by the fold rule
(helixflow.sequence_table). Nothing is downloaded.

    python config/examples/sequence_table/make_example.py      # from the repository root
    snakemake --cores 2 --configfile config/examples/sequence_table/config.yaml
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pyfaidx

from helixflow.genome import index_genome, read_aliases

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "data" / "yeast"
OUT = REPO / "data" / "sequence_table"
TARGET, JASPAR, WIDTH = "Stb5", "MA0392", 200


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    aliases = read_aliases(SHARED / "chrom_aliases.tsv")
    peaks = pd.read_csv(SHARED / "chexmix_peaks" / f"{TARGET}_CX.bed", sep="\t", header=None,
                        comment="#", usecols=[0, 1, 2], names=["chrom", "start", "end"])
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "genome.fa"
        index_genome(SHARED / "sacCer3_R64.fa.gz", fasta, Path(tmp) / "sizes.tsv")
        genome = pyfaidx.Fasta(str(fasta))
        records = []
        for row in peaks.itertuples():
            chrom = aliases.get(row.chrom, row.chrom)
            summit = (row.start + row.end) // 2
            start = max(0, summit - WIDTH // 2)
            sequence = str(genome[chrom][start:start + WIDTH]).upper()
            records.append(f">{TARGET}_{chrom}_{start}\n{sequence}\n")
    (OUT / f"{TARGET}.fa").write_text("".join(records))
    (OUT / "chip.tsv").write_text("target\tsequences\ttax_group\tjaspar_id\n"
                                  f"{TARGET}\t{TARGET}.fa\tfungi\t{JASPAR}\n")
    print(f"wrote {len(records)} sequences of {WIDTH} bp to {OUT / (TARGET + '.fa')}")


if __name__ == "__main__":
    main()
