"""Bad input to bopask-gen build: each refusal names the file/key, or the object is skipped."""

import json
import shutil

import pytest

from bopask_gen.cli import main
from bopask_gen.generator.shards import read_jsonl, shard_paths

SPLIT = 'train_real'


@pytest.fixture
def dataset_copy(ycbv_subset_dir, tmp_path):
    """A writable copy of the subset split (models linked file by file, never modified)."""
    root = tmp_path / 'ycbv_copy'
    shutil.copytree(ycbv_subset_dir / SPLIT, root / SPLIT)
    (root / 'models').mkdir()
    for src in (ycbv_subset_dir / 'models').iterdir():
        (root / 'models' / src.name).symlink_to(src)
    return root


def run_build(dataset_dir, out_dir, *extra):
    return main(['build', str(dataset_dir), '--split', SPLIT, '--out', str(out_dir),
                 '--workers', '1', '--no-progress', *extra])


def records_of(out_dir):
    return [r for p in shard_paths(out_dir) for r in read_jsonl(p)]


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_missing_scene_gt_key_is_named(dataset_copy, tmp_path, caplog):
    path = dataset_copy / SPLIT / '000000' / 'scene_gt.json'
    edit_json(path, lambda d: d['2'][1].pop('cam_t_m2c'))
    assert run_build(dataset_copy, tmp_path / 'out', '--tasks', 'pose') == 1
    assert 'scene_gt.json' in caplog.text and "'2/1/cam_t_m2c'" in caplog.text
    # Images before the bad one were finished and kept (shard size 1).
    caplog.clear()
    rc = run_build(dataset_copy, tmp_path / 'out2', '--tasks', 'pose',
                   '--images-per-shard', '1', '--skip-bad-images')
    assert rc == 0
    summary = json.loads((tmp_path / 'out2' / 'summary.json').read_text())
    assert len(summary['skipped_images']) == 1 and 'cam_t_m2c' in summary['skipped_images'][0]
    assert {(r['scene_id'], r['im_id']) for r in records_of(tmp_path / 'out2')} >= {(0, 1), (0, 3)}


def test_corrupt_depth_png_is_named(dataset_copy, tmp_path, caplog):
    depth = dataset_copy / SPLIT / '000001' / 'depth' / '000003.png'
    depth.write_bytes(b'\x89PNG\r\n\x1a\n this is not a png')
    assert run_build(dataset_copy, tmp_path / 'out', '--tasks', 'pose') == 1
    assert str(depth) in caplog.text and 'corrupt' in caplog.text


def test_corrupt_models_info_and_missing_split(dataset_copy, ycbv_subset_dir, tmp_path, caplog):
    info = dataset_copy / 'models' / 'models_info.json'
    info.unlink()
    info.write_text('{"1": {"diameter": 1')
    assert run_build(dataset_copy, tmp_path / 'out') == 2
    assert 'models_info.json' in caplog.text and 'not valid JSON' in caplog.text
    caplog.clear()
    info.unlink()
    info.symlink_to(ycbv_subset_dir / 'models' / 'models_info.json')
    assert main(['build', str(dataset_copy), '--split', 'test', '--out', str(tmp_path / 'o'),
                 '--no-progress']) == 2
    assert 'split folder not found' in caplog.text


def test_unknown_object_id_is_skipped_with_a_warning(dataset_copy, tmp_path, caplog):
    path = dataset_copy / SPLIT / '000001' / 'scene_gt.json'
    edit_json(path, lambda d: d['1'][0].update(obj_id=99))
    out = tmp_path / 'out'
    assert run_build(dataset_copy, out, '--tasks', 'pose,depth', '--limit-images', '7') == 0
    assert 'obj_id 99' in caplog.text
    on_image = [r for r in records_of(out) if (r['scene_id'], r['im_id']) == (1, 1)]
    assert on_image, 'the image with the unknown object must still be processed'
    assert all(0 not in r['objects'] for r in on_image)
    assert json.loads((out / 'summary.json').read_text())['warnings'] >= 1


def test_image_with_one_object_gets_only_single_object_tasks(dataset_copy, tmp_path):
    scene = dataset_copy / SPLIT / '000000'
    edit_json(scene / 'scene_gt.json', lambda d: d.update({'1': d['1'][:1]}))
    edit_json(scene / 'scene_gt_info.json', lambda d: d.update({'1': d['1'][:1]}))
    out = tmp_path / 'out'
    assert run_build(dataset_copy, out, '--tasks', 'pose,spatial,depth',
                     '--limit-images', '2') == 0
    tasks = {(r['im_id'], r['task']) for r in records_of(out) if r['scene_id'] == 0}
    assert {t for im, t in tasks if im == 1} == {'pose'}
    assert {t for im, t in tasks if im == 2} >= {'pose', 'depth'}


def test_bad_options_are_refused(ycbv_subset_dir, tmp_path, caplog, capsys):
    assert run_build(ycbv_subset_dir, tmp_path / 'a', '--objects', 'tless') == 2
    assert 'unknown object name table' in caplog.text
    odd = tmp_path / 'my_objects'
    odd.mkdir()
    (odd / SPLIT).symlink_to(ycbv_subset_dir / SPLIT)
    (odd / 'models').symlink_to(ycbv_subset_dir / 'models')
    caplog.clear()
    assert run_build(odd, tmp_path / 'b', '--limit-images', '1') == 2
    assert 'cannot infer the object name table' in caplog.text
    assert run_build(odd, tmp_path / 'c', '--limit-images', '1', '--tasks', 'pose',
                     '--objects', 'ycbv') == 0
    with pytest.raises(SystemExit):
        run_build(ycbv_subset_dir, tmp_path / 'd', '--tasks', 'pose,dance')
    assert 'dance' in capsys.readouterr().err


def test_ray_option_needs_ray(ycbv_subset_dir, tmp_path, caplog, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'ray', None)  # as if ray were not installed
    assert run_build(ycbv_subset_dir, tmp_path / 'out', '--tasks', 'pose', '--limit-images',
                     '1', '--ray', 'local') == 1
    assert 'ray package, which is not installed' in caplog.text
