import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_project import make_project, snakemake  # noqa: E402


@pytest.fixture
def restore_torch_state():
    """train_cnn switches on deterministic algorithms and sets threads process-wide."""
    import torch
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny planted-motif project, run end to end once per test session.

    Tests must not change it: those that mutate take a copy (see test_reruns.project).
    """
    root = tmp_path_factory.mktemp("tiny")
    make_project(root)
    result = snakemake(root, "--show-failed-logs")
    assert result.returncode == 0, result.stderr[-5000:]
    return root
