"""Fixtures shared by test/ and gen/test/: the real YCB-Video subset in ../shared/data."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[0]
SHARED = REPO.parent / 'shared'
YCBV_SUBSET = SHARED / 'data' / 'ycbv_real_subset'


@pytest.fixture(scope='session')
def ycbv_subset_dir():
    """Path of the real YCB-V frames in BOP format; fails loudly when ../shared is absent."""
    if not (YCBV_SUBSET / 'models' / 'models_info.json').is_file():
        pytest.fail(
            f'real test data not found at {YCBV_SUBSET}: these tests need the shared/ folder '
            'beside the repository checkout (CI always provides it)'
        )
    return YCBV_SUBSET


@pytest.fixture(scope='session')
def ycbv_dataset(ycbv_subset_dir):
    """A BopDataset over the real subset."""
    from bopask_gen.core.bop import BopDataset
    return BopDataset(ycbv_subset_dir)
