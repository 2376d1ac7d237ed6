"""The summary page's table of trained-model choices states restarts after a collapse."""

from __future__ import annotations

from helixflow.report import _choices_table


def record(target: str, **results) -> dict:
    chosen = {"model": {"filters": 64, "kernel": 21, "dense": 32}, "lr": 0.0015}
    return {"inputs": {"shards": {"path": f"results/data/g/shards/{target}/manifest.json"}},
            "results": {"chosen": chosen, "n_params": 101_000, "best_epoch": 3,
                        "valid_auroc": 0.91, **results}}


def test_restarts_and_a_collapse_are_shown():
    restart = {"seed": 42, "lr": 0.003, "collapsed_after_epoch": 1}
    page = _choices_table([record("CTCF"), record("MAX", restarts=[restart]),
                           record("FOXA1", restarts=[restart, restart], collapsed=True)])
    rows = page.split("<tr>")[2:]
    assert rows[0].startswith("<td>CTCF</td>") and rows[0].endswith("<td>0</td></tr>")
    assert "<td>1 (kept lr 0.0015)</td>" in rows[1]
    assert "<td>2 (kept lr 0.0015): still constant</td>" in rows[2]
    assert "restarts after a collapse" in page


def test_records_from_before_restarts_read_as_none():
    assert _choices_table([record("CTCF")]).count("<td>0</td>") == 1
