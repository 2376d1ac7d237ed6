"""Tests for helixflow.resources: requests that follow the inputs."""

from __future__ import annotations

import gzip
import json
import re
from types import SimpleNamespace

import pytest
from tiny_project import REPO

from helixflow.resources import (
    COSTS,
    GZIP_RATIO,
    MARGIN,
    MIN_MEM_MB,
    array_bytes,
    load_mb,
    mem_request,
    request,
    runtime_request,
)


def _manifest(path, n_train, width=1000):
    entry = {"x": {"shape": [n_train, 4, width], "dtype": "uint8"},
             "y": {"shape": [n_train], "dtype": "uint8"}}
    path.write_text(json.dumps({"window": width, "splits": {"train": entry,
                                                             "test": {"x": {"shape": [10, 4, width],
                                                                            "dtype": "uint8"}}}}))
    return path


def test_array_bytes_counts_every_listed_array():
    manifest = {"splits": {"a": {"x": {"shape": [3, 4, 5], "dtype": "uint8"},
                                 "y": {"shape": [3], "dtype": "float32"}}},
                "shards": [{"shape": [2, 10], "dtype": "uint16"}], "n": 7}
    assert array_bytes(manifest) == 60 + 12 + 40


def test_load_mb_by_kind_and_missing_files_count_zero(tmp_path):
    manifest = _manifest(tmp_path / "manifest.json", 100_000)
    plain = tmp_path / "peaks.bed"
    plain.write_bytes(b"x" * 2_000_000)
    packed = tmp_path / "peaks.bed.gz"
    packed.write_bytes(gzip.compress(b"chr1\t1\t2\n" * 10) + b"\0" * 999_000)
    assert load_mb([manifest]) == pytest.approx((100_000 * 4000 + 100_000 + 10 * 4000) / 1e6)
    assert load_mb([plain]) == pytest.approx(2.0)
    assert load_mb([packed]) == pytest.approx(GZIP_RATIO * packed.stat().st_size / 1e6)
    assert load_mb([tmp_path / "not_yet_made.json"]) == 0.0


def test_request_grows_with_the_input_and_the_attempt(tmp_path):
    for part in ("a", "b"):
        (tmp_path / part).mkdir()
    small = SimpleNamespace(shards=str(_manifest(tmp_path / "a" / "manifest.json", 1_000)))
    large = SimpleNamespace(shards=str(_manifest(tmp_path / "b" / "manifest.json", 1_000_000)))
    mem_small, min_small = request("train_cnn", small)
    mem_large, min_large = request("train_cnn", large)
    cost = COSTS["train_cnn"]
    assert mem_small >= MARGIN * cost.base_mb
    # ~4 GB more of shards: the request grows by MARGIN × mb_per_mb × the extra MB
    extra = load_mb([large.shards]) - load_mb([small.shards])
    assert 3_990 < extra < 4_000
    assert mem_large - mem_small == pytest.approx(MARGIN * cost.mb_per_mb * extra, abs=2)
    assert min_large > min_small
    assert request("train_cnn", large, attempt=2)[0] == pytest.approx(2 * mem_large, abs=1)
    assert request("index_genome")[0] >= MIN_MEM_MB


def test_callables_take_snakemakes_arguments(tmp_path):
    inputs = SimpleNamespace(shards=str(_manifest(tmp_path / "manifest.json", 5_000)))
    assert mem_request("train_cnn")({}, inputs, 1) == request("train_cnn", inputs)[0]
    assert runtime_request("train_cnn")({}, inputs, 1) == request("train_cnn", inputs)[1]


def test_every_rule_requests_through_the_model_and_names_real_inputs():
    """No constant mem_mb/runtime is left, and each cost's inputs exist in its rule."""
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        assert not re.search(r"\b(mem_mb|runtime)=\d", text), smk.name
        for block in re.split(r"(?m)^\s*rule ", text)[1:]:
            name = block.split(":", 1)[0]
            if re.search(r"mem_mb=", block):
                assert f'mem_request("{name}")' in block, name
                assert f'runtime_request("{name}")' in block, name
            if name in COSTS:
                inputs = block.split("output:", 1)[0]
                for key in COSTS[name].inputs:
                    assert re.search(rf"\b{key}=", inputs), (name, key)


def test_a_manifest_that_is_not_json_counts_by_its_size(tmp_path):
    broken = tmp_path / "manifest.json"
    broken.write_text("")
    assert load_mb([broken]) == 0.0
    broken.write_text("x" * 1000)
    assert load_mb([broken]) == pytest.approx(0.001)
