# Validation first (config and sheets against workflow/schemas), then lookup tables and
# input functions. Nothing below runs if the config or a sheet is wrong.
import json
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

from helixflow.config import MIL_BAG_BP, read_sample_sheet, validate_config
from helixflow.errors import InputError
from helixflow.code_graph import command_digests
from helixflow.launcher import failed_job_refusals, shell_prefix
from helixflow.resources import mem_request, runtime_request   # noqa: F401 (rules)

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"
# Every rule runs `helixflow STAGE ...` from this checkout's src/ (helixflow.launcher), in
# the project's .venv or in the rule's conda env (--sdm conda), which holds third-party
# packages only.
# --configfile files are merged over config/config.yaml, key by key (sections a file leaves
# out keep the default's values; --replace-workflow-config starts from nothing instead)
_overrides = [str(f) for f in workflow.overwrite_configfiles or []]
CONFIG_SOURCE = " + ".join([str(f) for f in workflow.configfiles if str(f) not in _overrides]
                           + _overrides) or "--config"
try:   # a refusal is one helixflow: line, the last thing printed (no traceback)
    config.update(validate_config(config, source=f"config ({CONFIG_SOURCE})",
                                  schema_dir=SCHEMAS))
    SAMPLES = read_sample_sheet(config["samples"], schema_dir=SCHEMAS)
except InputError as error:
    sys.exit(str(error))
_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
shell.prefix(shell_prefix(Path(workflow.basedir) / "src",
                          python="python" if _CONDA else sys.executable,
                          config_source=CONFIG_SOURCE))
TARGETS = list(SAMPLES.index)
# targets given as labelled sequences (helixflow.sequence_table) have shards but no peaks:
# the stages that need genome coordinates (multi-task, imbalance, MIL) use the others
SEQUENCE_TARGETS = [t for t in TARGETS if SAMPLES.loc[t, "sequences"]]
PEAK_TARGETS = [t for t in TARGETS if t not in SEQUENCE_TARGETS]
GENOME = config["genome"]["name"]
DATA = f"results/data/{GENOME}"
SWEEP = config.get("sweep") or {"target": None, "arms": []}
SWEEP_TARGET = SWEEP["target"] or TARGETS[0]
IMBALANCE_TARGET = (config.get("imbalance") or {}).get("target") or (PEAK_TARGETS or TARGETS)[0]
SWEEP_ARMS = {arm["name"]: arm for arm in SWEEP["arms"]}
METHYLATION = config.get("methylation")
ATTRIBUTIONS = config.get("attributions")
GRAMMAR = config.get("grammar")
MULTITASK = config.get("multitask")
IMBALANCE = config.get("imbalance")
MIL = config.get("mil")
PRETRAINING = config.get("pretraining")
SCRNA = config.get("scrna")
GENE_FINDING = config.get("gene_finding")
SPLICE = config.get("splice")
CHROMATIN = config.get("chromatin_contrastive")
# the splice pretext starts from the pretrained encoder and its MLM head when there is one
SPLICE_ENCODER = (["results/pretrain/model.safetensors", "results/pretrain/heads.safetensors"]
                  if SPLICE and SPLICE["pretrained"] and PRETRAINING else [])
if not PEAK_TARGETS:   # sequence tables only: no coordinates for the stages that need them
    MULTITASK = IMBALANCE = MIL = None
MODELS = ["cnn", "pwm_jaspar", "kmer_logreg"]
# Where training runs (helixflow.device): the rules that train ask the scheduler for a GPU
# unless the config says `device: cpu`; a job granted a GPU that torch cannot see stops.
DEVICE = config["device"]
GPU = 0 if DEVICE == "cpu" else 1
# The library code each `helixflow COMMAND` runs, by command: its CLI function and every
# helixflow module it imports, found from the import graph (helixflow.code_graph, ast only).
# Each rule passes its command's digest as a param, so editing that code re-runs it only.
CODE = command_digests()


def one_of(names):
    """A wildcard pattern matching exactly ``names`` (nothing when empty)."""
    return "|".join(names) or "(?!)"


wildcard_constraints:
    target=one_of(TARGETS),


def staged_inputs():
    """{relpath: (url, sha256)} for every input the config names."""
    inputs = {}
    for key in ("fasta", "blacklist", "chrom_aliases"):
        spec = config["genome"].get(key)
        if spec:
            inputs[spec["path"]] = (spec.get("url") or "", spec.get("sha256") or "")
    for row in SAMPLES.itertuples():
        if row.peaks:
            inputs[row.peaks] = (row.peaks_url, row.peaks_sha256)
        if row.sequences:
            inputs[row.sequences] = ("", "")
        for bam in filter(None, f"{row.treatment_bam},{row.control_bam}".split(",")):
            inputs[bam] = inputs[f"{bam}.bai"] = ("", "")
    extra = (config.get("multitask") or {}).get("extra_targets", []) + (
        config.get("methylation") or {}).get("inputs", []) + (
        config.get("scrna") or {}).get("files", []) + (
        [config["gene_finding"]["annotation"]] if config.get("gene_finding") else []) + (
        [config["splice"]["annotation"]] if config.get("splice") else [])
    for spec in extra:
        inputs[spec["path"]] = (spec.get("url") or "", spec.get("sha256") or "")
    return inputs


INPUTS = staged_inputs()
if IMBALANCE and IMBALANCE_TARGET in SEQUENCE_TARGETS:
    raise ValueError(f"helixflow: config: imbalance.target '{IMBALANCE_TARGET}' is given as "
                     f"sequences, without the genome coordinates the imbalance stage draws "
                     f"its negatives from; name a peaks target ({', '.join(PEAK_TARGETS)}) "
                     f"or set 'imbalance: null'")
if SWEEP_TARGET not in TARGETS and SWEEP_ARMS:
    raise ValueError(f"helixflow: config: sweep.target '{SWEEP_TARGET}' is not in the sample "
                     f"sheet {config['samples']}; use one of {', '.join(TARGETS)}")
# data_mirror: one directory or a list searched in order (e.g. a lab's own data, then a
# shared copy of public inputs).
_mirror_setting = config.get("data_mirror") or []
MIRRORS = [_mirror_setting] if isinstance(_mirror_setting, str) else list(_mirror_setting)


def mirror_of(relpath):
    """The first mirror directory that holds ``relpath``, or "" when none does."""
    return next((m for m in MIRRORS if Path(m, relpath).is_file()), "")


for _rel, (_url, _sha) in INPUTS.items():
    if not _url and not Path("resources", _rel).exists() and not mirror_of(_rel):
        raise ValueError(f"helixflow: input '{_rel}' is missing: not in the mirror(s) "
                         f"{MIRRORS} and no url is given; put the file there, fix "
                         f"'data_mirror' in the config or give the input a url")


def chromatin_peaks():
    """The peak files (one per protein) of the chromatin view, read in place from the first
    mirror that holds the folder (hundreds of files: not staged one job each; their sha256
    are recorded in results/chromatin/proteins.tsv)."""
    folder = next((Path(m, CHROMATIN["peaks_dir"]) for m in MIRRORS
                   if Path(m, CHROMATIN["peaks_dir"]).is_dir()), None)
    files = sorted(str(p) for p in folder.glob("*.bed")) if folder else []
    if not files:
        raise ValueError(f"helixflow: chromatin_contrastive.peaks_dir "
                         f"'{CHROMATIN['peaks_dir']}' holds no .bed file in the mirror(s) "
                         f"{MIRRORS}; put the per-protein peak files there or set "
                         f"'chromatin_contrastive: null'")
    return files


CHROMATIN_PEAKS = chromatin_peaks() if CHROMATIN else []


def resource(key):
    """Staged path of a genome-level input, or [] when the config has none."""
    spec = config["genome"].get(key)
    return f"resources/{spec['path']}" if spec else []


def mirror_copy(wildcards):
    """The mirror's copy of an input, so that a change of its content re-stages it."""
    mirror = mirror_of(wildcards.relpath)
    return str(Path(mirror, wildcards.relpath)) if mirror else []


def target_peaks(target):
    """The target's peaks: staged from the sheet, or called by MACS3 from its alignments."""
    if SAMPLES.loc[target, "treatment_bam"]:
        return f"{DATA}/peaks/{target}.narrowPeak"
    return f"resources/{SAMPLES.loc[target, 'peaks']}"


def tiles_file(width):
    """The genome's background tile table at ``width`` bp (rule genome_tiles)."""
    return f"{DATA}/tiles/{width}.tsv.gz"


def peaks_of(wildcards):
    return target_peaks(wildcards.target)


def multitask_peaks():
    """{target: peaks file} of the multi-task heads: the sheet's targets, then the extra ones."""
    peaks = {t: target_peaks(t) for t in PEAK_TARGETS}
    peaks |= {e["target"]: f"resources/{e['path']}" for e in MULTITASK["extra_targets"]}
    return peaks


def peak_format_of(wildcards):
    if SAMPLES.loc[wildcards.target, "treatment_bam"]:
        return "narrowPeak"
    return SAMPLES.loc[wildcards.target, "peak_format"]


def bams_of(target, column):
    """Staged BAMs of one sheet column (comma-separated), [] when empty."""
    return [f"resources/{p}" for p in SAMPLES.loc[target, column].split(",") if p]


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def has_jaspar(target):
    return bool(SAMPLES.loc[target, "jaspar_id"])


def models_of(target):
    return [m for m in MODELS if m != "pwm_jaspar" or has_jaspar(target)]


def transfer_params():
    return {**PRETRAINING["transfer"], "seed": config["seed"]}


def transfer_headlines():
    """{model name: prediction file pattern} of each encoder × mode on 100% of the labels,
    first seed: scored beside the spine's models in the metrics tables."""
    if not PRETRAINING:
        return {}
    from helixflow.transfer_grid import headline_predictions
    return {m: f"results/transfer/{{target}}/{f}"   # cnn_scratch: the spine's cnn is there
            for m, f in headline_predictions(transfer_params()).items() if m != "cnn_scratch"}


def transfer_predictions(target):
    return [pattern.format(target=target) for pattern in transfer_headlines().values()]


def evaluated_models(target):
    """{model: test predictions} scored in the metrics tables: the spine's and transfer's."""
    models = {m: f"results/models/{target}/{m}/test_predictions.tsv" for m in models_of(target)}
    models |= {m: pattern.format(target=target) for m, pattern in transfer_headlines().items()}
    return models


def candidate_models(target):
    """The models the workflow chooses among for ``target`` on the valid split."""
    models = list(evaluated_models(target))
    return models + ["cnn_multitask"] if MULTITASK and target in PEAK_TARGETS else models


def selection_inputs(target):
    """{valid_MODEL: where its valid AUROC is recorded, test_MODEL: its test predictions}."""
    runs = f"results/transfer/{target}/runs.tsv"
    valid = {m: runs for m in transfer_headlines()}
    valid |= {m: f"results/models/{target}/{m}/record.json" for m in models_of(target)}
    test = dict(evaluated_models(target))
    if "cnn_multitask" in candidate_models(target):
        valid["cnn_multitask"] = "results/multitask/auroc.tsv"
        test["cnn_multitask"] = f"results/multitask/predictions/{target}.tsv"
    return {f"valid_{m}": valid[m] for m in candidate_models(target)} | {
        f"test_{m}": test[m] for m in candidate_models(target)}


def figure_outputs():
    """Every figure of the paper, PNG and SVG."""
    stems = ["metrics_summary"]
    stems += [f"{t}_{kind}" for t in TARGETS for kind in ("roc_pr", "filter_logos")]
    if SWEEP_ARMS:
        stems += ["sweep_learning_curves", "sweep_bias_variance"]
    if ATTRIBUTIONS:
        stems += [f"{t}_motifs_beside" for t in TARGETS]
    if PRETRAINING:
        stems.append("label_efficiency")
    return [f"results/figures/{s}.{ext}" for s in stems for ext in ("png", "svg")]


def metric_tables():
    """Per-target metrics tables, plus those of optional models scored on the same windows."""
    tables = expand("results/metrics/{target}.tsv", target=TARGETS)
    if MULTITASK:
        tables.append("results/multitask/metrics.tsv")
    return tables


def report_sections():
    """{summary-page section: its result table} for the optional stages that run."""
    sections = {}
    if ATTRIBUTIONS:
        sections["motif_sources"] = "results/motifs/sources_summary.tsv"
    if GRAMMAR:
        sections["grammar"] = "results/grammar/pairs_summary.tsv"
    if MULTITASK:
        sections["multitask"] = "results/multitask/auroc.tsv"
    if IMBALANCE:
        sections["imbalance"] = f"results/imbalance/{IMBALANCE_TARGET}/imbalance.tsv"
    if MIL:
        sections["mil"] = "results/mil/summary.tsv"
    if PRETRAINING:
        sections["pretraining"] = "results/pretrain/diagnostics.tsv"
        sections["transfer"] = "results/transfer/comparison.tsv"
    if GENE_FINDING:
        sections["gene_finding"] = "results/genefind/metrics.tsv"
        if GENE_FINDING["prokaryote_check"]:
            sections["gene_finding_prokaryote"] = "results/genefind/prokaryote.tsv"
    if SPLICE:
        sections["splice"] = "results/splice/classifier_metrics.tsv"
    if CHROMATIN:
        sections["chromatin"] = "results/chromatin/metrics.tsv"
    return sections


def final_outputs():
    outputs = [
        "results/metrics/summary.tsv",
        "results/metrics/paired_summary.tsv",
        "results/metrics/selection.tsv",
        "results/motifs/summary.tsv",
        "results/summary.html",
        *figure_outputs(),
    ]
    if SWEEP_ARMS:
        outputs.append("results/metrics/sweep.tsv")
    if ATTRIBUTIONS:
        outputs.append("results/attributions/summary.tsv")
    outputs += report_sections().values()          # each optional stage's summary table
    if METHYLATION:
        outputs.append(f"results/methylation/{METHYLATION['name']}/metrics.tsv")
    if SCRNA:
        outputs.append(f"results/scrna/{SCRNA['name']}/denoise_metrics.tsv")
    return outputs


OPTIONAL_STAGES = {"sweep": SWEEP_ARMS, "attributions": ATTRIBUTIONS, "grammar": GRAMMAR,
                   "multitask": MULTITASK, "imbalance": IMBALANCE, "mil": MIL,
                   "pretraining": PRETRAINING, "gene_finding": GENE_FINDING, "splice": SPLICE,
                   "chromatin_contrastive": CHROMATIN,
                   "methylation": METHYLATION, "scrna": SCRNA}


onstart:
    on = [name for name, setting in OPTIONAL_STAGES.items() if setting]
    off = [name for name, setting in OPTIONAL_STAGES.items() if not setting]
    print(f"helixflow: config {CONFIG_SOURCE}; {len(TARGETS)} targets; optional stages on: "
          f"{', '.join(on) or 'none'}; off (null): {', '.join(off) or 'none'}", file=sys.stderr)


onerror:
    # each failed job's refusal (file, line, fix), last, instead of only inside its log file
    for refusal in failed_job_refusals(log):
        print(refusal, file=sys.stderr)
