import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The official MNIST idx files (root/MNIST/raw/...): ../shared/datasets beside the checkout, or $MNIST_ROOT
# (a worktree or a CI clone elsewhere points it at that folder).
SHARED_DATA = Path(os.environ.get("MNIST_ROOT") or ROOT.parent / "shared" / "datasets")

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The official MNIST idx files (../shared/datasets), or skip with the reason."""
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"real MNIST files not found under {SHARED_DATA}/MNIST/raw (set MNIST_ROOT to the folder that holds MNIST/raw)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits_prepared(tmp_path_factory):
    """A prepared `digits` dataset (tiny, ships with scikit-learn) for fast tests."""
    from compress.config import DataConfig
    from compress.data import prepare, save_prepared

    out = tmp_path_factory.mktemp("prepared")
    save_prepared(prepare(DataConfig(source="digits", val_size=200, calib_size=128), seed=0), out)
    return out


def project_layout(root: Path, prepared: Path | None = None, baseline: Path | None = None) -> Path:
    """A project folder for running stage scripts with ``cwd=root``: the pipeline's relative paths
    (stages/pipeline.py) point at ``prepared`` (data/prepared) and ``baseline`` (models/baseline), linked in."""
    from stages.pipeline import BASELINE, PREPARED

    root = Path(root)
    for src, rel in ((prepared, PREPARED), (baseline, BASELINE)):
        if src is not None and Path(src).resolve() != (root / rel).resolve():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).symlink_to(Path(src).resolve(), target_is_directory=True)
    return root
