# HelixFlow: genome FASTA + ChIP peaks → labelled windows → CNN → held-out metrics,
# JASPAR-matched motifs, the overfitting sweep, figures and an HTML report.
# This file is the entry point only; each stage family lives in workflow/rules/.
from snakemake.utils import min_version

min_version("9.0")


# our YAML reader first: a syntax error names the file, line and column (YAML errors in a
# --configfile are Snakemake's to report: `helixflow check-yaml FILE` gives the line)
import sys
from pathlib import Path

from helixflow.config import load_yaml
from helixflow.errors import InputError

try:
    if Path("config/config.yaml").exists():   # relative to the working directory
        load_yaml("config/config.yaml")
except InputError as error:
    sys.exit(str(error))


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/motifs.smk"
include: "workflow/rules/interpret.smk"
include: "workflow/rules/multitask.smk"
include: "workflow/rules/supervised.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/genefind.smk"
include: "workflow/rules/splice.smk"
include: "workflow/rules/chromatin.smk"
include: "workflow/rules/omics.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
