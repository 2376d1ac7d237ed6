"""What the workflow prints when a job refuses its input: the refusal, last, by rule."""

from __future__ import annotations

from pathlib import Path

from helixflow.launcher import failed_job_refusals

MAIN_LOG = """\
[Thu Dec  3 14:10:04 2026]
localrule windows:
    log: results/logs/windows/Reb1.log
Error in rule windows:
    message: None
    jobid: 1
    output: results/data/tiny/windows/Reb1.bed
    log: {job_log} (check log file(s) for error details)
    shell:
        helixflow windows ...
        (command exited with non-zero exit code)
Error in rule train_cnn:
    jobid: 2
    log: {other_log} (check log file(s) for error details)
Shutting down, this might take some time.
"""


def test_the_refusal_of_each_failed_job_is_named_by_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job_log, other_log = Path("logs/windows.log"), Path("logs/train.log")
    job_log.parent.mkdir()
    job_log.write_text("reading peaks\nhelixflow: peaks.bed line 3: bad strand 'x'; use + or -\n")
    other_log.write_text("Traceback (most recent call last):\nValueError: boom\n")
    main_log = tmp_path / "snakemake.log"
    main_log.write_text(MAIN_LOG.format(job_log=job_log, other_log=other_log))
    assert failed_job_refusals([str(main_log)]) == [
        "helixflow: rule windows (logs/windows.log): peaks.bed line 3: bad strand 'x'; "
        "use + or -"]
    assert failed_job_refusals(tmp_path / "missing.log") == []
