import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_project import REPO, make_project, snakemake  # noqa: E402


@pytest.fixture(scope="session")
def data_mirror() -> Path:
    """The shared data mirror: $HELIXFLOW_DATA, else ../shared/data beside the repository.

    Tests that need it fail (not skip) when it is missing, so a missing mirror never passes
    for a green run.
    """
    override = os.environ.get("HELIXFLOW_DATA")
    mirror = Path(override) if override else REPO.parent / "shared" / "data"
    if not mirror.is_dir():
        where = "from HELIXFLOW_DATA" if override else "../shared/data from the repository root"
        pytest.fail(f"data mirror {mirror} ({where}) not found: set HELIXFLOW_DATA to the "
                    f"directory that holds yeast/, methylation/ and scrna/", pytrace=False)
    return mirror


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
