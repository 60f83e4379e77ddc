import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> "Path | None":
    """../shared beside the checkout (or $AFFINITY_SHARED); None when absent."""
    cand = Path(os.environ.get("AFFINITY_SHARED", REPO.parent / "shared"))
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    d = shared_dir()
    if d is None:
        pytest.skip("../shared is not present")
    return d
