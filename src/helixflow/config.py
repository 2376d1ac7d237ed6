"""Validate the config and sample sheets against JSON Schema, with errors a person can act on.

Snakemake's own ``validate`` reports raw jsonschema messages; here every error names the
file, the key (or the sheet's line) and the fix, and defaults from the schema are filled in.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import yaml

from .errors import InputError
from .files import RELPATH_FIX, open_text, relpath_problem

# the default MIL bag width (helixflow.mil.DEFAULTS), here, torch-free, because the workflow
# needs it at start-up to name the bag-width tile table
MIL_BAG_BP = 1000

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"
# sample-sheet columns that name inputs (comma-separated where several), relative to the mirror
SHEET_PATH_COLUMNS = ("peaks", "treatment_bam", "control_bam", "sequences")


def load_schema(name: str, schema_dir: str | Path | None = None) -> dict:
    return yaml.safe_load((Path(schema_dir or SCHEMA_DIR) / f"{name}.schema.yaml").read_text())


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _subschema(schema: dict, path: list) -> dict:
    node = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].split("/")[-1]]
    return node


def _message(error: jsonschema.ValidationError, schema: dict, source: str) -> InputError:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(_subschema(schema, path).get("properties", {}))
        unknown = sorted(set(error.instance) - set(known))
        hints = [difflib.get_close_matches(u, known, n=1) for u in unknown]
        fix = "; ".join(f"did you mean '{h[0]}'?" for h in hints if h) or \
            f"known keys here: {', '.join(known)}"
        key = _key(path + [unknown[0]]) if unknown else _key(path)
        return InputError(f"key '{key}' is not a known setting", path=source, fix=fix)
    if error.validator == "required":
        return InputError(f"{error.message} (under '{_key(path)}')", path=source,
                          fix="add the key; see workflow/schemas for what it means")
    if error.validator == "type":
        return InputError(f"key '{_key(path)}' must be {error.validator_value}, got "
                          f"{error.instance!r}", path=source, fix="change its value")
    relative = schema["definitions"]["relative_path"]["pattern"]
    # an input path may sit under oneOf (input file or null): its own error says more
    for bad_path in [error, *error.context]:
        if bad_path.validator == "pattern" and bad_path.validator_value == relative:
            problem = relpath_problem(bad_path.instance) or "is empty"
            return InputError(f"key '{_key(bad_path.absolute_path)}': input path "
                              f"{bad_path.instance!r} {problem}", path=source, fix=RELPATH_FIX)
    return InputError(f"key '{_key(path)}': {error.message}", path=source,
                      fix="see workflow/schemas/*.schema.yaml for allowed values")


def _fill_defaults(instance: dict, schema: dict, root: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if "$ref" in sub:
            sub = root["definitions"][sub["$ref"].split("/")[-1]]
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict):
            _fill_defaults(instance[key], sub, root)


def validate_config(config: dict, source: str = "config/config.yaml",
                    schema_dir: str | Path | None = None) -> dict:
    """Return a copy of ``config`` with defaults filled in, or raise the first clear error."""
    schema = load_schema("config", schema_dir)
    config = copy.deepcopy(config)
    _fill_defaults(config, schema, schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config),
                    key=lambda e: list(e.absolute_path))
    if errors:
        raise _message(errors[0], schema, source)
    _check_splits(config["splits"], source)
    return config


def _check_splits(splits: dict, source: str) -> None:
    """A chromosome may sit in one split only (a held-out chromosome in train would leak)."""
    seen: dict[str, str] = {}
    for split in ("train", "valid", "test"):
        for chrom in splits.get(split) or []:
            if chrom in seen:
                where = "twice in" if seen[chrom] == split else f"in splits.{seen[chrom]} and in"
                raise InputError(f"chromosome '{chrom}' is {where} splits.{split}",
                                 path=source, fix="list each chromosome in one split only")
            seen[chrom] = split


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error names the file, line and column."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise InputError(f"not valid YAML: {err.problem or err.context}", path=path,
                         line=mark.line + 1 if mark else None,
                         column=mark.column + 1 if mark else None,
                         fix="fix the syntax there (indentation, a missing ']' or ':', "
                         "tabs instead of spaces)") from None


def read_sample_sheet(path: str | Path, schema_dir: str | Path | None = None) -> pd.DataFrame:
    """Read and validate a TSV sample sheet; errors name the line (header = line 1)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("sample sheet not found", path=path, fix="set 'samples' in the config")
    try:   # blank lines kept as rows, so that the index is each row's place in the file
        with open_text(path) as handle:
            sheet = pd.read_csv(handle, sep="\t", dtype=str, keep_default_na=False,
                                skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise InputError("the sample sheet is empty", path=path,
                         fix="write a header line (target, peaks, ...) and one row per "
                         "target") from None
    if "target" in sheet:  # blank and comment rows dropped; the index keeps line numbers
        blank = (sheet == "").all(axis=1)
        sheet = sheet[~blank & ~sheet["target"].str.startswith("#")]
    schema = load_schema("samples", schema_dir)
    for col in sheet.columns:
        if col not in schema["properties"]:
            raise InputError(f"unknown column '{col}'", path=path, line=1,
                             fix=f"known columns: {', '.join(schema['properties'])}")
    for i, row in zip(sheet.index, sheet.to_dict("records"), strict=True):
        _check_input_paths(row, path, line=i + 2)
        row = {k: v for k, v in row.items() if v != "" or k in schema["required"]}
        for error in jsonschema.Draft7Validator(schema).iter_errors(row):
            raise InputError(f"column '{_key(error.absolute_path)}': {error.message}",
                             path=path, line=i + 2, fix="fix the value")
    duplicated = sheet["target"][sheet["target"].duplicated()]
    if not duplicated.empty:
        raise InputError(f"target '{duplicated.iloc[0]}' appears twice", path=path,
                         line=int(duplicated.index[0]) + 2, fix="give each target one row")
    for col in ("peaks", "peaks_url", "peaks_sha256", "jaspar_id", "treatment_bam",
                "control_bam", "sequences", "peak_format"):
        if col not in sheet:
            sheet[col] = ""
    sheet["peak_format"] = sheet["peak_format"].replace("", "auto")
    for i, row in zip(sheet.index, sheet.itertuples(), strict=True):
        given = [c for c in ("peaks", "treatment_bam", "sequences") if getattr(row, c)]
        if len(given) != 1:
            raise InputError(f"target '{row.target}' needs one of 'peaks', 'treatment_bam' or "
                             f"'sequences'" + (f", not {' and '.join(given)}" if given else ""),
                             path=path, line=i + 2,
                             fix="give a peaks file, ChIP alignments to call peaks from with "
                             "MACS3, or a table of labelled sequences (and leave the others "
                             "empty)")
        if row.control_bam and not row.treatment_bam:
            raise InputError(f"target '{row.target}' has 'control_bam' but no 'treatment_bam'",
                             path=path, line=i + 2, fix="add the ChIP alignments or drop the "
                             "control")
    return sheet.set_index("target", drop=False)


def _check_input_paths(row: dict[str, str], path: Path, line: int) -> None:
    """Refuse a sheet row whose input paths could leave the mirror (absolute or with '..')."""
    for col in SHEET_PATH_COLUMNS:
        for relpath in row.get(col, "").split(","):
            if problem := relpath_problem(relpath):
                raise InputError(f"column '{col}': input path {relpath!r} {problem}",
                                 path=path, line=line, fix=RELPATH_FIX)


def overlay(defaults: dict, params: dict | None, what: str = "setting") -> dict:
    """A deep copy of ``defaults`` updated with ``params``; nested dicts merge one level.

    A key not in ``defaults`` is an :class:`InputError` naming it and the known keys.
    """
    merged = copy.deepcopy(defaults)
    for key, value in (params or {}).items():
        if key not in merged:
            raise InputError(f"unknown {what} '{key}'", fix=f"use {', '.join(merged)}")
        if isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = {**merged[key], **copy.deepcopy(value)}
        else:
            merged[key] = copy.deepcopy(value)
    return merged
