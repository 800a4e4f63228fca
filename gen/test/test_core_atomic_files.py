import json

import numpy as np
import pytest

from bopask_gen.core.atomic_files import atomic_path, TMP_SUFFIX, write_json_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / 'sub' / 'a.json'
    write_json_atomic(target, {'v': 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2')
            raise RuntimeError('crash mid-write')
    assert json.loads(target.read_text()) == {'v': 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ['a.json']


def test_extension_lets_writers_pick_the_format(tmp_path):
    target = tmp_path / 'parts.npz'
    with atomic_path(target, '.npz') as tmp:
        assert tmp.name.startswith('.parts.npz.') and tmp.name.endswith(TMP_SUFFIX + '.npz')
        np.savez_compressed(tmp, x=np.arange(3))
    with np.load(target) as npz:
        assert npz['x'].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ['parts.npz']
