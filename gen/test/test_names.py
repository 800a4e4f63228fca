"""Name tables: shipped tables, inference from the folder name, user tables, errors."""

import json

import pytest

from bopask_gen.generator.names import (
    infer_table_key,
    load_name_table,
    NameTableError,
    read_table,
    TABLE_KEYS,
)

SIZES = {'ycbv': 21, 'hope': 28, 'handal': 40, 'lm': 15}


@pytest.mark.parametrize('key', TABLE_KEYS)
def test_shipped_tables_cover_every_object_id(key):
    table = load_name_table(key)
    assert sorted(table.names) == list(range(1, SIZES[key] + 1))
    assert all(names and all(n.strip() for n in names) for names in table.names.values())


@pytest.mark.parametrize('key', ['ycbv', 'hope', 'lm'])
def test_object_names_are_unique_within_a_table(key):
    # Two objects sharing a name could not be told apart in a question.
    owner = {}
    for obj_id, names in load_name_table(key).names.items():
        for name in names:
            assert owner.setdefault(name.lower(), obj_id) == obj_id, (key, name)


def test_known_names():
    ycbv = load_name_table('ycbv')
    assert ycbv.canonical(1) == 'master chef can'
    assert 'can of coffee' in ycbv.aliases(1)
    assert ycbv.canonical(21) == 'foam brick'
    hope = load_name_table('hope')
    assert hope.canonical(9) == 'box of granola bars'
    assert hope.canonical(3) == 'butter box'
    assert load_name_table('lm').canonical(1) == 'ape figurine'
    assert not load_name_table('handal').verified


def test_inference_from_folder_name(tmp_path, ycbv_subset_dir):
    assert infer_table_key(ycbv_subset_dir) == 'ycbv'
    for folder, key in [('lmo', 'lm'), ('lm_test', 'lm'), ('hopev2', 'hope'),
                        ('handal_val', 'handal'), ('YCBV', 'ycbv')]:
        (tmp_path / folder).mkdir()
        assert infer_table_key(tmp_path / folder) == key
    (tmp_path / 'tless').mkdir()
    with pytest.raises(NameTableError, match='--objects'):
        load_name_table(None, tmp_path / 'tless')


def test_pick_is_canonical_without_rng_and_varies_with_one():
    import numpy as np
    table = load_name_table('ycbv')
    assert table.pick(1) == 'master chef can'
    rng = np.random.default_rng(0)
    assert len({table.pick(1, rng) for _ in range(50)}) == len(table.aliases(1))


def test_user_table_short_layout(tmp_path):
    path = tmp_path / 'names.json'
    path.write_text(json.dumps({'1': 'blue mug', '2': ['bowl', 'red bowl']}))
    table = load_name_table(str(path))
    assert table.canonical(1) == 'blue mug'
    assert table.aliases(2) == ('bowl', 'red bowl')
    with pytest.raises(NameTableError, match='object id 3'):
        table.canonical(3)


@pytest.mark.parametrize('content, message', [
    ('{"1": "mug"', 'not valid JSON'),
    ('{"one": "mug"}', 'not an integer'),
    ('{"1": []}', 'non-empty list'),
    ('{}', 'empty'),
    ('[1, 2]', 'JSON object'),
])
def test_bad_user_tables_name_the_file(tmp_path, content, message):
    path = tmp_path / 'names.json'
    path.write_text(content)
    with pytest.raises(NameTableError, match=message) as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_unknown_table_and_missing_file(tmp_path):
    with pytest.raises(NameTableError, match='unknown object name table'):
        load_name_table('tless')
    with pytest.raises(NameTableError, match='not found'):
        load_name_table(str(tmp_path / 'none.json'))


def test_subset_objects_all_have_names(ycbv_dataset):
    table = load_name_table(None, ycbv_dataset.root)
    for frame in ycbv_dataset.frames('train_real'):
        assert all(table.has(g.obj_id) for g in frame.gts)
