"""Peaks from alignments: check ChIP/control BAMs against the genome, then run MACS3 callpeak.

The output is a narrowPeak file in the genome's chromosome names with the summit offset in
column 10, which :func:`helixflow.intervals.read_peaks` reads unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pysam

from .errors import InputError
from .files import atomic_path
from .genome import read_aliases, read_fai
from .intervals import nearest_distance

DEFAULTS: dict[str, Any] = {
    "format": "BAM",          # BAM (single-end reads, extended) or BAMPE (paired fragments)
    "genome_size": "auto",    # effective genome size: 'auto' = sum of the genome's lengths
    "q": 0.01,                # MACS q-value cutoff
    "nomodel": False,         # False: MACS estimates the fragment size d from the data ...
    "fix_bimodal": True,      # ... and falls back to extsize when it cannot build the model
    "extsize": 200,           # fragment size used with nomodel (or the fallback)
    "shift": 0,
    "keep_dup": "auto",       # 'auto', 'all' or an integer
    "call_summits": False,    # True: split peak regions into sub-peaks, one line per summit
    "name": "macs",           # MACS experiment name, the prefix of peak names
    "ignore_chroms": [],      # BAM chromosomes to skip (e.g. chrM missing from the genome)
    "extra_args": [],         # further macs3 callpeak arguments, passed as given
}

NARROWPEAK_COLUMNS = ["chrom", "start", "end", "name", "score", "strand", "fold_enrichment",
                      "neg_log10_p", "neg_log10_q", "summit_offset"]


# ---------------------------------------------------------------- checking alignments

def check_alignments(bam_paths: Sequence[str | Path], sizes: Mapping[str, int],
                     aliases: Mapping[str, str], ignore: Collection[str] = (),
                     paired: bool = False) -> None:
    """Check every BAM before any work: readable BAM, indexed, chromosomes match the genome.

    Every reference sequence with mapped reads (from the index statistics) must be a genome
    chromosome, directly or through ``aliases``, unless listed in ``ignore``; every reference
    that names a genome chromosome must have the genome's length; and one genome chromosome
    must be named the same way in all files (MACS matches treatment and control by name).
    ``paired`` checks that the first reads are paired (for MACS's BAMPE mode).
    """
    seen: dict[str, tuple[str, Path]] = {}   # genome chrom -> (name in BAM, first BAM)
    for path in map(Path, bam_paths):
        if not path.is_file():
            raise InputError("alignment file not found", path=path,
                             fix="check the path in the sample sheet")
        try:
            bam = pysam.AlignmentFile(str(path), "r")
        except (ValueError, OSError) as err:
            raise InputError(f"not a BAM file ({err})", path=path,
                             fix="give coordinate-sorted, indexed BAM alignments") from err
        with bam:
            if not bam.is_bam:
                raise InputError("not a BAM file (SAM or CRAM)", path=path,
                                 fix=f"convert it: samtools sort -o out.bam {path.name} && "
                                 "samtools index out.bam")
            if not bam.has_index():
                raise InputError("the BAM has no index (.bai or .csi)", path=path,
                                 fix=f"sort it if needed and run: samtools index {path}")
            _warn_stale_index(path)
            stats = {s.contig: s.mapped for s in bam.get_index_statistics()}
            if sum(stats.values()) == 0:
                raise InputError("the BAM has no mapped reads", path=path,
                                 fix="check the alignment step")
            if paired:
                _check_paired(bam, path)
            lengths = dict(zip(bam.references, bam.lengths, strict=True))
        for contig, length in lengths.items():
            if contig in ignore:
                continue
            chrom = _genome_name(contig, sizes, aliases)
            if chrom is None:
                if stats.get(contig, 0) > 0:
                    known = list(sizes)
                    shown = ", ".join(known[:4]) + (f", ... {known[-1]}" if len(known) > 4
                                                    else "")
                    raise InputError(
                        f"chromosome '{contig}' has {stats[contig]} mapped reads but is not in "
                        f"the genome (known: {shown})", path=path,
                        fix="add it to the config's 'chrom_aliases' file, align to the same "
                        "genome, or list it under 'ignore_chroms' to skip its reads")
                continue
            if length != sizes[chrom]:
                shown = f"'{contig}' ('{chrom}' in the genome)" if contig != chrom else \
                    f"'{contig}'"
                raise InputError(
                    f"chromosome {shown} is {length} bp in the BAM header but "
                    f"{sizes[chrom]} bp in the genome", path=path,
                    fix="the reads were aligned to another assembly: align them to the "
                    "configured genome or configure the genome they were aligned to")
            if chrom in seen and seen[chrom][0] != contig:
                raise InputError(
                    f"chromosome '{chrom}' is called '{contig}' here but '{seen[chrom][0]}' in "
                    f"{seen[chrom][1]}", path=path,
                    fix="align treatment and control to the same genome build (same names), "
                    "or rename the header with samtools reheader")
            seen.setdefault(chrom, (contig, path))


def _genome_name(contig: str, sizes: Mapping[str, int], aliases: Mapping[str, str]) -> str | None:
    if contig in sizes:
        return contig
    if aliases.get(contig) in sizes:
        return aliases[contig]
    return None


def _warn_stale_index(path: Path) -> None:
    for index in (Path(f"{path}.bai"), Path(f"{path}.csi"), path.with_suffix(".bai")):
        if index.is_file() and index.stat().st_mtime < path.stat().st_mtime:
            print(f"helixflow: warning: {index} is older than {path}; if the BAM changed, "
                  f"re-run samtools index {path}", file=sys.stderr)
            return


def _check_paired(bam: pysam.AlignmentFile, path: Path, n: int = 1000) -> None:
    for i, read in enumerate(bam.fetch(until_eof=True)):
        if i >= n:
            break
        if not read.is_paired:
            raise InputError(f"read {read.query_name} is not paired, but format BAMPE was "
                             "asked for", path=path, fix="use format 'BAM' for single-end "
                             "reads")


# ---------------------------------------------------------------- running MACS3

def macs3_executable() -> str:
    """The ``macs3`` program beside this Python (its venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "macs3"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("macs3")
    if found is None:
        raise InputError(f"the macs3 program was not found (looked in {beside.parent} and on "
                         "PATH)", fix="install it: pip install macs3==3.0.4 (or activate the "
                         "workflow's peak-calling conda environment)")
    return found


def macs3_version(executable: str) -> str:
    out = subprocess.run([executable, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().removeprefix("macs3 ").strip()


def macs3_command(executable: str, treatment: Sequence[str | Path],
                  control: Sequence[str | Path], genome_size: int | float | str,
                  params: Mapping[str, Any], outdir: str | Path) -> list[str]:
    """The ``macs3 callpeak`` argument list for ``params`` (keys of :data:`DEFAULTS`)."""
    cmd = [executable, "callpeak", "-t", *map(str, treatment)]
    if control:
        cmd += ["-c", *map(str, control)]
    cmd += ["-f", str(params["format"]), "-g", str(genome_size), "-q", str(params["q"]),
            "--keep-dup", str(params["keep_dup"]), "-n", str(params["name"]),
            "--outdir", str(outdir), "--tempdir", str(outdir)]
    if params["format"] != "BAMPE":
        cmd += ["--extsize", str(int(params["extsize"])), "--shift", str(int(params["shift"]))]
        if params["nomodel"]:
            cmd.append("--nomodel")
        elif params["fix_bimodal"]:
            cmd.append("--fix-bimodal")
    if params["call_summits"]:
        cmd.append("--call-summits")
    return cmd + [str(a) for a in params["extra_args"]]


def call_peaks(treatment: Sequence[str | Path], control: Sequence[str | Path],
               out_narrowpeak: str | Path, genome_size: int | float | str,
               params: Mapping[str, Any] | None = None,
               sizes: Mapping[str, int] | None = None,
               aliases: Mapping[str, str] | None = None) -> dict:
    """Run ``macs3 callpeak`` in a temporary directory and write a sorted narrowPeak.

    Chromosome names are renamed to the genome's (``sizes`` keys) through ``aliases``;
    peaks on chromosomes in ``params['ignore_chroms']`` are dropped. The file is sorted by
    chromosome name then start (``sort -k1,1 -k2,2n``) and written atomically; MACS's log
    streams to our stderr. Returns counts: peaks, tags read and kept, fragment size d, the
    MACS version and the seconds MACS took.
    """
    params = {**DEFAULTS, **(params or {})}
    executable = macs3_executable()
    out_narrowpeak = Path(out_narrowpeak)
    out_narrowpeak.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".macs3.", dir=out_narrowpeak.parent) as workdir:
        cmd = macs3_command(executable, treatment, control, genome_size, params, workdir)
        started = time.perf_counter()
        log = _run_streaming(cmd)
        seconds = time.perf_counter() - started
        prefix = Path(workdir) / str(params["name"])
        peaks = read_narrowpeak(f"{prefix}_peaks.narrowPeak")
        summary = _macs_summary(Path(f"{prefix}_peaks.xls"))
    if sizes is not None:
        peaks = _rename(peaks, sizes, aliases or {}, set(params["ignore_chroms"]))
    peaks = peaks.sort_values(["chrom", "start", "end", "summit_offset"], kind="stable")
    with atomic_path(out_narrowpeak) as tmp:
        peaks.to_csv(tmp, sep="\t", header=False, index=False)
    if params["format"] == "BAMPE":
        fragments = "paired-end fragments"
    elif params["nomodel"]:
        fragments = "extsize (nomodel)"
    elif any("fix-bimodal is set" in line for line in log):
        fragments = "extsize (the model could not be built)"
    else:
        fragments = "model"
    return {"peaks": len(peaks), **summary, "fragment_size_from": fragments,
            "macs_version": macs3_version(executable),
            "macs_seconds": round(seconds, 2), "command": " ".join(cmd[1:])}


def _run_streaming(cmd: list[str]) -> list[str]:
    """Run ``cmd``, copying its output line by line to our stderr; return the lines.

    A failure raises with the last lines of the output.
    """
    lines: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(line)
            lines.append(line)
    if proc.returncode != 0:
        raise RuntimeError(f"helixflow: macs3 callpeak failed (exit {proc.returncode}); its "
                           f"last lines:\n{''.join(lines[-20:])}")
    return lines


def read_narrowpeak(path: str | Path) -> pd.DataFrame:
    """A narrowPeak file as a DataFrame with :data:`NARROWPEAK_COLUMNS` (empty file → 0 rows)."""
    if Path(path).stat().st_size == 0:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("chrom", "name", "strand")
                                          else float) for c in NARROWPEAK_COLUMNS})
    return pd.read_csv(path, sep="\t", header=None, names=NARROWPEAK_COLUMNS, comment="#",
                       dtype={"chrom": str, "name": str, "strand": str})


_SUMMARY_PATTERNS = {
    "treatment_tags": r"# total tags in treatment: (\d+)",
    "treatment_tags_kept": r"# tags after filtering in treatment: (\d+)",
    "control_tags": r"# total tags in control: (\d+)",
    "control_tags_kept": r"# tags after filtering in control: (\d+)",
    "fragment_d": r"# d = (\d+)",
}


def _macs_summary(xls: Path) -> dict[str, int]:
    """Tag counts and fragment size from the comment header of MACS's ``_peaks.xls``."""
    text = xls.read_text() if xls.is_file() else ""
    found = {k: re.search(p, text) for k, p in _SUMMARY_PATTERNS.items()}
    return {k: int(m.group(1)) for k, m in found.items() if m}


def _rename(peaks: pd.DataFrame, sizes: Mapping[str, int], aliases: Mapping[str, str],
            ignore: set[str]) -> pd.DataFrame:
    peaks = peaks[~peaks["chrom"].isin(ignore)]
    renamed = peaks["chrom"].map(lambda c: _genome_name(c, sizes, aliases))
    if renamed.isna().any():
        missing = peaks["chrom"][renamed.isna()].iloc[0]
        raise InputError(f"MACS reported peaks on chromosome '{missing}', which is not in the "
                         "genome", fix="add it to the config's 'chrom_aliases' file or to "
                         "'ignore_chroms'")
    out = peaks.assign(chrom=renamed)
    return out.assign(end=np.minimum(out["end"], out["chrom"].map(sizes)))


# ---------------------------------------------------------------- the step

def effective_genome_size(value: int | float | str, sizes: Mapping[str, int]) -> int | str:
    """MACS's ``-g``: 'auto' is the genome's total length; numbers and shortcuts pass through."""
    if value == "auto":
        return int(sum(sizes.values()))
    return value if isinstance(value, str) else int(value)


def run_call_peaks(treatment_bams: Sequence[str | Path], control_bams: Sequence[str | Path],
                   sizes_path: str | Path, aliases_path: str | Path | None,
                   out_narrowpeak: str | Path, record_path: str | Path | None = None,
                   params: Mapping[str, Any] | None = None) -> dict:
    """Check the alignments, call peaks with MACS3, write narrowPeak (+ record.json).

    ``sizes_path`` is the genome's ``.fai`` or chrom-sizes file; ``aliases_path`` the
    2-column chromosome aliases TSV (BAM name → genome name) or None. Returns the summary
    that :func:`call_peaks` returns, plus the genome size used.
    """
    params = {**DEFAULTS, **(params or {})}
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise InputError(f"unknown peak-calling parameter(s) {sorted(unknown)}",
                         fix=f"use only {sorted(DEFAULTS)}")
    if not treatment_bams:
        raise InputError("no treatment (ChIP) alignments given", fix="list at least one BAM")
    sizes = read_fai(sizes_path)
    aliases = read_aliases(aliases_path)
    check_alignments([*treatment_bams, *control_bams], sizes, aliases,
                     ignore=params["ignore_chroms"], paired=params["format"] == "BAMPE")
    genome_size = effective_genome_size(params["genome_size"], sizes)
    summary = call_peaks(treatment_bams, control_bams, out_narrowpeak, genome_size, params,
                         sizes=sizes, aliases=aliases)
    summary["genome_size"] = genome_size
    if record_path is not None:
        from .records import write_record
        inputs = {f"treatment{i}": p for i, p in enumerate(treatment_bams)}
        inputs |= {f"control{i}": p for i, p in enumerate(control_bams)}
        inputs["sizes"] = sizes_path
        if aliases_path:
            inputs["aliases"] = aliases_path
        write_record(record_path, "call_peaks", params, inputs, summary)
    return summary


# ---------------------------------------------------------------- judging calls

def _summit_table(called: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(called, (str, Path)):
        called = read_narrowpeak(called)
    if "summit" not in called:
        called = called.assign(summit=called["start"] + called["summit_offset"])
    return called[["chrom", "summit"]]


def _nearest_distance(query: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
    """For each query (chrom, summit), the distance to the nearest target on its chromosome."""
    dist = np.full(len(query), np.inf)
    for chrom, idx in query.groupby("chrom").indices.items():
        positions = target.loc[target["chrom"] == chrom, "summit"].to_numpy()
        dist[idx] = nearest_distance(query["summit"].to_numpy()[idx], positions)
    return dist


def _truth_table(truth: Sequence[tuple[str, int]] | pd.DataFrame) -> pd.DataFrame:
    if isinstance(truth, pd.DataFrame):
        return truth[["chrom", "summit"]].reset_index(drop=True)
    return pd.DataFrame(list(truth), columns=["chrom", "summit"])


def summit_recall(called: pd.DataFrame | str | Path,
                  truth: Sequence[tuple[str, int]] | pd.DataFrame, tolerance: int = 50) -> float:
    """Fraction of true summits with a called summit within ±``tolerance`` bp.

    ``called`` is a narrowPeak path/table (summit = start + column 10) or a table with
    ``chrom, summit``; ``truth`` is ``[(chrom, pos), ...]`` or a ``chrom, summit`` table.
    """
    truth_df = _truth_table(truth)
    if truth_df.empty:
        raise ValueError("no true summits given")
    return float(np.mean(_nearest_distance(truth_df, _summit_table(called)) <= tolerance))


def unmatched_calls(called: pd.DataFrame | str | Path,
                    truth: Sequence[tuple[str, int]] | pd.DataFrame, tolerance: int = 50) -> int:
    """Number of called summits farther than ``tolerance`` bp from every true summit."""
    return int(np.sum(_nearest_distance(_summit_table(called), _truth_table(truth))
                      > tolerance))
