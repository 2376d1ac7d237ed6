"""Tests for helixflow.config: schema validation, defaults, friendly errors, sample sheets."""

from __future__ import annotations

import copy
import gzip
import re
from pathlib import Path

import pytest
import yaml

from helixflow.config import load_schema, read_sample_sheet, validate_config
from helixflow.errors import InputError
from helixflow.files import relpath_problem

REPO = Path(__file__).resolve().parents[1]
HEADER = "target\tpeaks\tpeaks_url\tpeaks_sha256\tpeak_format\ttax_group\tjaspar_id"


@pytest.fixture
def config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _error(config: dict) -> InputError:
    with pytest.raises(InputError) as err:
        validate_config(config)
    return err.value


def _defaults(schema: dict) -> dict:
    """Default of every leaf under ``schema``, as a nested dict."""
    out = {}
    for key, sub in schema.get("properties", {}).items():
        if sub.get("type") == "object" and "properties" in sub:
            out[key] = _defaults(sub)
        elif "default" in sub:
            out[key] = sub["default"]
    return out


# ---------------------------------------------------------------- validate_config


def test_default_config_passes_unchanged(config):
    original = copy.deepcopy(config)
    checked = validate_config(config)
    assert config == original                       # input not modified
    assert checked == original                      # every key is set, so nothing filled


@pytest.mark.parametrize("section", ["windows", "cnn", "evaluate", "motifs", "sweep"])
def test_removed_section_is_filled_with_schema_defaults(config, section):
    del config[section]
    checked = validate_config(config)
    schema = load_schema("config")["properties"][section]
    assert checked[section] == _defaults(schema)


def test_defaults_have_expected_values(config):
    for section in ("windows", "cnn", "threads"):
        del config[section]
    checked = validate_config(config)
    assert checked["windows"] == {"width": 200, "negative_ratio": 1.0, "shuffled_ratio": 0.0,
                                  "gc_bins": 20, "max_n_fraction": 0.01}
    assert checked["cnn"]["architecture"]["kernel"] == 19
    assert checked["cnn"]["training"]["patience"] == 8
    assert checked["cnn"]["grid"] == []
    assert checked["threads"] == 2


def test_removed_leaf_is_filled_and_others_kept(config):
    del config["cnn"]["training"]["patience"]
    config["cnn"]["training"]["epochs"] = 3
    checked = validate_config(config)
    assert checked["cnn"]["training"]["patience"] == 8
    assert checked["cnn"]["training"]["epochs"] == 3


def test_unknown_key_names_path_and_suggests(config):
    config["cnn"]["training"]["epohcs"] = 5
    err = _error(config)
    assert "cnn.training.epohcs" in str(err)
    assert "did you mean 'epochs'?" in str(err)
    assert "config/config.yaml" in str(err)


def test_unknown_top_level_key(config):
    config["seeed"] = 1
    err = _error(config)
    assert "'seeed'" in str(err) and "did you mean 'seed'?" in str(err)


def test_unknown_key_without_close_match_lists_known_keys(config):
    config["windows"]["zzzzzz"] = 1
    err = _error(config)
    assert "windows.zzzzzz" in str(err)
    assert "known keys here:" in str(err) and "gc_bins" in str(err)


def test_unknown_key_in_ref_and_array_items(config):
    config["genome"]["fasta"]["md5"] = "x"
    assert "genome.fasta.md5" in str(_error(config))
    config["genome"]["fasta"].pop("md5")
    config["sweep"]["arms"][1]["filtres"] = 3
    err = _error(config)
    assert "sweep.arms.1.filtres" in str(err) and "did you mean 'filters'?" in str(err)


@pytest.mark.parametrize(("path", "value", "words"), [
    (("windows", "width"), "200", ["windows.width", "integer"]),
    (("cnn", "training", "rc_augment"), "yes", ["cnn.training.rc_augment", "boolean"]),
    (("seed",), 1.5, ["'seed'", "integer"]),
    (("splits", "valid"), "chrVII", ["splits.valid", "array"]),
])
def test_wrong_type_names_key(config, path, value, words):
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    message = str(_error(config))
    for word in words:
        assert word in message


@pytest.mark.parametrize(("path", "value", "key"), [
    (("windows", "gc_bins"), 0, "windows.gc_bins"),
    (("windows", "width"), 10, "windows.width"),
    (("evaluate", "level"), 1.0, "evaluate.level"),
    (("genome", "fasta", "sha256"), "ABC", "genome.fasta.sha256"),
    (("genome", "name"), "sac cer", "genome.name"),
])
def test_out_of_range_names_key(config, path, value, key):
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert f"key '{key}'" in str(_error(config))


@pytest.mark.parametrize("key", ["seed", "samples", "genome", "splits"])
def test_missing_required(config, key):
    del config[key]
    message = str(_error(config))
    assert f"'{key}' is a required property" in message


PATH_FIX = "give a path relative to the data mirror, without '..'"


@pytest.mark.parametrize(("path", "value", "key"), [
    (("genome", "fasta"), "../genome.fa.gz", "genome.fasta.path"),
    (("genome", "blacklist"), "/etc/passwd", "genome.blacklist.path"),
    (("multitask", "extra_targets", 0), "yeast/../../x.bed", "multitask.extra_targets.0.path"),
    (("methylation", "inputs", 1), "..", "methylation.inputs.1.path"),
    (("scrna", "files", 0), "/data/matrix.mtx.gz", "scrna.files.0.path"),
])
def test_input_path_leaving_the_mirror_names_key_and_fix(config, path, value, key):
    node = config
    for part in path:
        node = node[part]
    node["path"] = value
    err = _error(config)
    assert f"key '{key}': input path {value!r} {relpath_problem(value)}" in str(err)
    assert err.fix == PATH_FIX


def test_scrna_matrix_leaving_the_mirror_is_refused(config):
    config["scrna"]["matrix"] = "../matrix"
    err = _error(config)
    assert "key 'scrna.matrix': input path '../matrix' has a '..' component" in str(err)
    assert err.fix == PATH_FIX


SAFE = ["yeast/peaks.bed", "a..b/x.bed", ".hidden/x..bed", "x/.../y.bed", "peaks..bed"]
UNSAFE = ["../x.bed", "yeast/../x.bed", "yeast/..", "..", "/etc/passwd", "/x.bed", "a/../../b"]


@pytest.mark.parametrize("relpath", SAFE + UNSAFE)
def test_schema_patterns_agree_with_relpath_problem(relpath):
    config_pattern = load_schema("config")["definitions"]["relative_path"]["pattern"]
    sheet = load_schema("samples")["properties"]
    safe = relpath not in UNSAFE
    assert (relpath_problem(relpath) is None) == safe
    assert bool(re.search(config_pattern, relpath)) == safe
    assert bool(re.search(sheet["peaks"]["pattern"], relpath)) == safe
    for column in ("treatment_bam", "control_bam"):
        bam = relpath + "/r.bam" if relpath.endswith("..") else \
            relpath.removesuffix(".bed") + ".bam"
        assert bool(re.search(sheet[column]["pattern"], bam)) == safe
        assert bool(re.search(sheet[column]["pattern"], f"ok/a.bam,{bam}")) == safe


def test_source_names_the_file(config):
    config["threads"] = 0
    with pytest.raises(InputError, match="^helixflow: my/config.yaml: key 'threads'"):
        validate_config(config, source="my/config.yaml")


# ---------------------------------------------------------------- read_sample_sheet


def _row(target="Reb1", jaspar="MA0363", fmt="bed"):
    return f"{target}\tpeaks/{target}.bed\t\t\t{fmt}\tfungi\t{jaspar}"


def _sheet(tmp_path, *lines, header=HEADER):
    path = tmp_path / "chip.tsv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_real_sample_sheet():
    sheet = read_sample_sheet(REPO / "config" / "chip.tsv")
    assert list(sheet.index) == ["Reb1", "Abf1", "Cbf1", "Mcm1", "Rap1"]
    assert (sheet["target"] == sheet.index).all()
    assert sheet.loc["Reb1", "jaspar_id"] == "MA0363"


def test_minimal_sheet_fills_optional_columns(tmp_path):
    path = _sheet(tmp_path, "Reb1\tpeaks/r.bed\tauto\tfungi",
                  header="target\tpeaks\tpeak_format\ttax_group")
    sheet = read_sample_sheet(path)
    assert sheet.loc["Reb1", "jaspar_id"] == ""
    assert sheet.loc["Reb1", "peaks_url"] == ""
    assert sheet.loc["Reb1", "peaks_sha256"] == ""


def test_empty_optional_values_pass(tmp_path):
    sheet = read_sample_sheet(_sheet(tmp_path, _row(jaspar=""), _row("Abf1", "MA0265.1")))
    assert sheet["jaspar_id"].tolist() == ["", "MA0265.1"]


def test_unknown_column(tmp_path):
    path = _sheet(tmp_path, _row() + "\tx", header=HEADER + "\tantibody")
    with pytest.raises(InputError) as err:
        read_sample_sheet(path)
    message = str(err.value)
    assert "chip.tsv line 1:" in message and "'antibody'" in message
    assert "known columns" in message


def test_bad_jaspar_id_names_line(tmp_path):
    path = _sheet(tmp_path, _row(), _row("Abf1", "MA265"), _row("Cbf1"))
    with pytest.raises(InputError) as err:
        read_sample_sheet(path)
    message = str(err.value)
    assert "chip.tsv line 3:" in message
    assert "jaspar_id" in message and "MA265" in message


def test_bad_peak_format_names_line(tmp_path):
    path = _sheet(tmp_path, _row(fmt="narrowpeak"))
    with pytest.raises(InputError, match="line 2: column 'peak_format'"):
        read_sample_sheet(path)


def test_bad_target_name(tmp_path):
    path = _sheet(tmp_path, _row(), _row("Reb 1"))
    with pytest.raises(InputError, match="line 3: column 'target'"):
        read_sample_sheet(path)


def test_duplicated_target_names_second_line(tmp_path):
    path = _sheet(tmp_path, _row(), _row("Abf1"), _row("Reb1"))
    with pytest.raises(InputError) as err:
        read_sample_sheet(path)
    message = str(err.value)
    assert "target 'Reb1' appears twice" in message
    assert "chip.tsv line 4:" in message


def test_missing_sheet(tmp_path):
    with pytest.raises(InputError, match="sample sheet not found"):
        read_sample_sheet(tmp_path / "nope.tsv")


BAM_HEADER = "target\tpeaks\ttreatment_bam\tcontrol_bam\tpeak_format\ttax_group"


def test_alignments_instead_of_peaks(tmp_path):
    path = _sheet(tmp_path, "Reb1\t\tchip/r1.bam,chip/r2.bam\tchip/input.bam\tauto\tfungi",
                  header=BAM_HEADER)
    sheet = read_sample_sheet(path)
    assert sheet.loc["Reb1", "treatment_bam"] == "chip/r1.bam,chip/r2.bam"
    assert sheet.loc["Reb1", "peaks"] == ""


@pytest.mark.parametrize("row, expected", [
    ("Reb1\tpeaks/r.bed\tchip/r.bam\t\tauto\tfungi", "not peaks and treatment_bam"),
    ("Reb1\t\t\t\tauto\tfungi", "one of 'peaks', 'treatment_bam' or 'sequences'"),
    ("Reb1\tpeaks/r.bed\t\tchip/input.bam\tauto\tfungi", "'control_bam' but no 'treatment_bam'"),
    ("Reb1\t\tchip/r.sam\t\tauto\tfungi", "column 'treatment_bam'"),
])
def test_peaks_or_alignments_errors_name_the_line(tmp_path, row, expected):
    path = _sheet(tmp_path, row, header=BAM_HEADER)
    with pytest.raises(InputError, match="line 2") as err:
        read_sample_sheet(path)
    assert expected in str(err.value)


@pytest.mark.parametrize("row, column, relpath", [
    ("Reb1\t../my_peaks.bed\t\t\tauto\tfungi", "peaks", "../my_peaks.bed"),
    ("Reb1\tpeaks/../../my_peaks.bed\t\t\tauto\tfungi", "peaks", "peaks/../../my_peaks.bed"),
    ("Reb1\t/etc/passwd\t\t\tauto\tfungi", "peaks", "/etc/passwd"),
    ("Reb1\t\t../chip.bam\t\tauto\tfungi", "treatment_bam", "../chip.bam"),
    ("Reb1\t\tchip/a.bam,/abs/b.bam\t\tauto\tfungi", "treatment_bam", "/abs/b.bam"),
    ("Reb1\t\tchip/a.bam\t../input.bam\tauto\tfungi", "control_bam", "../input.bam"),
])
def test_sheet_path_leaving_the_mirror_names_line_and_fix(tmp_path, row, column, relpath):
    user_file = tmp_path / "my_peaks.bed"
    user_file.write_text("chrI\t10\t20\n")
    path = _sheet(tmp_path, "Abf1\tpeaks/a.bed\t\t\tauto\tfungi", row, header=BAM_HEADER)
    with pytest.raises(InputError) as err:
        read_sample_sheet(path)
    assert f"chip.tsv line 3: column '{column}': input path {relpath!r}" in str(err.value)
    assert err.value.fix == PATH_FIX
    assert user_file.read_text() == "chrI\t10\t20\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chip.tsv", "my_peaks.bed"]


@pytest.mark.parametrize("compress", [False, True])
def test_sheet_with_bom_and_crlf_reads_like_a_plain_one(tmp_path, compress):
    text = "\ufeff" + "\r\n".join([HEADER, _row(), _row("Abf1", "MA0265.1")]) + "\r\n"
    path = tmp_path / "chip.tsv"
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())
    sheet = read_sample_sheet(path)
    assert list(sheet.columns[:2]) == ["target", "peaks"]
    assert list(sheet.index) == ["Reb1", "Abf1"]
    assert sheet["jaspar_id"].tolist() == ["MA0363", "MA0265.1"]


# ---------------------------------------------------------------- config semantics (issue 17)

def test_a_chromosome_in_two_splits_names_the_config_and_both_splits(config):
    config["splits"]["test"] = ["chrIV", "chrVII"]           # chrVII is also in valid
    with pytest.raises(InputError) as err:
        validate_config(config, source="config (config/config.yaml + mine.yaml)")
    message = str(err.value)
    assert "config (config/config.yaml + mine.yaml)" in message
    assert "'chrVII' is in splits.valid and in splits.test" in message


def test_a_chromosome_twice_in_one_split(config):
    config["splits"]["train"] = ["chrI", "chrI"]
    assert "'chrI' is twice in splits.train" in str(_error(config))


def test_the_default_genome_is_read_from_the_mirror_only(config):
    """Its mirror copy lacks UCSC's chrM, so no public URL serves a file with its checksum."""
    assert config["genome"]["fasta"]["url"] is None
    assert re.fullmatch(r"[0-9a-f]{64}", config["genome"]["fasta"]["sha256"])


def test_sweep_null_turns_the_sweep_off(config):
    config["sweep"] = None
    assert validate_config(config)["sweep"] is None


@pytest.mark.parametrize("text, line, column", [
    ("seed: 1\nsplits:\n  valid: [chrI\n  test: [chrII]\n", 4, 7),
    ("seed: 1\n\tthreads: 2\n", 2, 1),
])
def test_yaml_syntax_error_names_file_line_and_column(tmp_path, text, line, column):
    from helixflow.config import load_yaml
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_yaml(path)
    assert (err.value.path, err.value.line, err.value.column) == (path, line, column)
    assert "not valid YAML" in str(err.value)


def test_empty_sample_sheet_is_refused_without_a_traceback(tmp_path):
    sheet = tmp_path / "chip.tsv"
    sheet.write_text("")
    with pytest.raises(InputError, match="the sample sheet is empty"):
        read_sample_sheet(sheet)


def test_sheet_line_numbers_count_blank_and_comment_lines(tmp_path):
    sheet = tmp_path / "chip.tsv"
    sheet.write_text(HEADER + "\n\nReb1\tyeast/reb1.bed\t\t\tbed\tfungi\tMA0363\n\n# note\n"
                     "Abf1\t/abs/abf1.bed\t\t\tbed\tfungi\tMA0265\n")
    with pytest.raises(InputError) as err:
        read_sample_sheet(sheet)
    assert err.value.line == 6 and "'/abs/abf1.bed'" in str(err.value)


def test_a_target_given_as_a_sequence_table(tmp_path):
    path = _sheet(tmp_path, "Ctcf\t\ttables/ctcf.tsv.gz\tvertebrates",
                  header="target\tpeaks\tsequences\ttax_group")
    sheet = read_sample_sheet(path)
    assert sheet.loc["Ctcf", "sequences"] == "tables/ctcf.tsv.gz"
    assert sheet.loc["Ctcf", "peak_format"] == "auto"     # not needed, filled in
    both = _sheet(tmp_path, "Ctcf\tp.bed\tt.tsv\tvertebrates",
                  header="target\tpeaks\tsequences\ttax_group")
    with pytest.raises(InputError, match="line 2: .*not peaks and sequences"):
        read_sample_sheet(both)
    outside = _sheet(tmp_path, "Ctcf\t\t../t.tsv\tvertebrates",
                     header="target\tpeaks\tsequences\ttax_group")
    with pytest.raises(InputError, match="line 2: column 'sequences'"):
        read_sample_sheet(outside)
