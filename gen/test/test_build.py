"""bopask-gen build on the real YCB-V subset: record schema, answers, summary, viz."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bopask_gen.core.answer_format import COORD_FORMATS, parse_points, parse_yes_no
from bopask_gen.core.camera import project_points
from bopask_gen.generator.build import build, BuildConfig
from bopask_gen.generator.questions import answer_text, POINT_COUNTS, TASKS
from bopask_gen.generator.shards import read_jsonl, shard_paths

SPLIT = 'train_real'
TOP_KEYS = {'id', 'image', 'conversations', 'task', 'dataset', 'split', 'scene_id', 'im_id',
            'objects', 'target', 'image_size', 'coords'}


def load_records(out_dir):
    return [r for p in shard_paths(out_dir) for r in read_jsonl(p)]


def point_tolerance(coords, w):
    # Text rounding: integer pixels, 3 decimals of [0, 1], integers of 0-1000.
    return {'pixel': 0.51, 'norm': 0.0005 * w + 1e-6, 'norm1000': 0.0005 * w + 1e-6}[coords]


@pytest.fixture(scope='module')
def full_build(ycbv_subset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('full')
    config = BuildConfig(dataset_dir=str(ycbv_subset_dir), split=SPLIT, out_dir=str(out),
                         seed=3, images_per_shard=4)
    summary = build(config, workers=1, progress=False)
    return out, summary, load_records(out)


def test_every_task_produces_records(full_build):
    _, summary, records = full_build
    tasks = {r['task'] for r in records}
    assert tasks == set(TASKS), summary['counts']
    assert summary['images'] == 10 and summary['images_this_run'] == 10
    assert summary['qas'] == len(records)
    for task in TASKS:
        assert summary['counts'][task] == sum(r['task'] == task for r in records)
    for key in ('seconds', 'images_per_s', 'coords', 'tasks', 'seed', 'dataset', 'split'):
        assert key in summary


def test_record_schema(full_build, ycbv_dataset):
    out, _, records = full_build
    ids = [r['id'] for r in records]
    assert len(ids) == len(set(ids))
    for r in records:
        assert TOP_KEYS <= set(r), r['id']
        assert r['split'] == SPLIT and r['coords'] == 'pixel' and r['image_size'] == [640, 480]
        assert (out / r['image']).is_file() and not Path(r['image']).is_absolute()
        conv = r['conversations']
        assert [c['from'] for c in conv] == ['human', 'gpt']
        assert conv[0]['value'].startswith('<image>\n')
        gts = ycbv_dataset.scene(SPLIT, r['scene_id']).frame(r['im_id']).gts
        assert all(0 <= o < len(gts) for o in r['objects'])
        t = r['target']
        if r['task'] in POINT_COUNTS:
            assert len(t['points']) == POINT_COUNTS[r['task']]
        if r['task'] == 'grasp':
            T = np.asarray(t['pose_cam'])
            assert T.shape == (4, 4) and np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3),
                                                      atol=1e-4)
            assert 0 < t['width'] <= 0.08 + 1e-9
        if r['task'] == 'trajectory':
            assert len(r['objects']) == 2 and len(t['points']) == len(t['points_cam']) >= 2
        if r['task'] == 'rearrangement':
            assert len(t['blockers']) == len(t['points'])
            assert r['objects'][0] not in t['blockers']
        if r['task'] in ('spatial', 'depth'):
            assert isinstance(t['answer'], bool) and len(r['objects']) == 2
            assert t['relation'] in ({'left', 'right', 'front', 'behind', 'above', 'below'}
                                     if r['task'] == 'spatial' else {'closer', 'farther'})


def test_pixel_targets_are_the_projected_3d_points(full_build, ycbv_dataset):
    _, _, records = full_build
    K = {}
    for r in records:
        t = r['target']
        if 'points_cam' not in t:
            continue
        key = (r['scene_id'], r['im_id'])
        if key not in K:
            K[key] = ycbv_dataset.scene(SPLIT, key[0]).frame(key[1]).K
        proj = project_points(np.asarray(t['points_cam']), K[key])
        # points_cam is rounded to 0.01 mm; 0.05 px covers that at these distances
        assert np.max(np.abs(proj - np.asarray(t['points']))) < 0.05, r['id']


def test_depth_answers_agree_with_gt_centres(full_build, ycbv_dataset):
    _, _, records = full_build
    checked = 0
    for r in (r for r in records if r['task'] == 'depth'):
        frame = ycbv_dataset.scene(SPLIT, r['scene_id']).frame(r['im_id'])
        dist = []
        for gt_index in r['objects']:
            gt = frame.gts[gt_index]
            info = ycbv_dataset.models_info[gt.obj_id]
            centre = gt.T_m2c[:3, :3] @ (info.bbox_min + info.bbox_size / 2) + gt.T_m2c[:3, 3]
            dist.append(np.linalg.norm(centre))
        closer = dist[0] < dist[1]
        expected = closer if r['target']['relation'] == 'closer' else not closer
        assert r['target']['answer'] == expected, r['id']
        checked += 1
    assert checked


def test_answer_text_parses_back_to_the_target(full_build):
    _, _, records = full_build
    for r in records:
        w, h = r['image_size']
        for coords in COORD_FORMATS:
            # The record's own text (pixel) and the same target written in the other formats.
            text = (r['conversations'][1]['value'] if coords == r['coords']
                    else answer_text(r['task'], r['target'], coords, w, h))
            if r['task'] in ('spatial', 'depth'):
                assert parse_yes_no(text) == r['target']['answer']
                continue
            pts = parse_points(text, coords, w, h, expected=POINT_COUNTS.get(r['task']))
            want = np.asarray(r['target']['points'], dtype=float).reshape(-1, 2)
            assert pts.shape == want.shape, r['id']
            if len(want):
                assert np.max(np.abs(pts - want)) <= point_tolerance(coords, w), (r['id'], text)


@pytest.mark.parametrize('coords', ['norm', 'norm1000'])
def test_build_writes_answers_in_the_chosen_coords(ycbv_subset_dir, tmp_path, coords):
    config = BuildConfig(dataset_dir=str(ycbv_subset_dir), split=SPLIT, out_dir=str(tmp_path),
                         tasks=('pose', 'depth'), coords=coords, limit_images=3)
    summary = build(config, progress=False)
    records = load_records(tmp_path)
    assert summary['coords'] == coords and records
    for r in records:
        assert r['coords'] == coords
        w, h = r['image_size']
        text = r['conversations'][1]['value']
        if r['task'] == 'pose':
            assert 'normalized' in r['conversations'][0]['value'] if coords == 'norm' else \
                '0 to 1000' in r['conversations'][0]['value']
            pts = parse_points(text, coords, w, h, expected=8)
            assert np.max(np.abs(pts - np.asarray(r['target']['points']))) <= \
                point_tolerance(coords, w)
            assert max(r['target']['points'][0]) > 1.5  # the target itself stays in pixels


def test_summary_file_matches(full_build):
    out, summary, _ = full_build
    assert json.loads((out / 'summary.json').read_text()) == summary


def test_viz_draws_every_task(full_build, tmp_path):
    from bopask_gen.generator.viz import visualize
    out, _, records = full_build
    written = visualize(out, n=12, dest=tmp_path)
    assert len(written) == 12
    drawn_tasks = {p.name.split('_')[-2] for p in written}
    assert drawn_tasks == set(TASKS)
    by_id = {r['id']: r for r in records}
    for path in written:
        img = cv2.imread(str(path))
        record = by_id[path.stem]
        original = cv2.imread(str(out / record['image']))
        assert img.shape[1] == original.shape[1] and img.shape[0] > original.shape[0]
        changed = np.any(img[:original.shape[0]] != original, axis=2).sum()
        assert changed > 50, path.name  # the answer is drawn on the image


def test_viz_cli_refuses_a_folder_without_shards(tmp_path):
    from bopask_gen.cli import main
    assert main(['viz', str(tmp_path), '--n', '2']) == 2


def test_the_ground_truth_passes_its_own_metrics(full_build, tmp_path):
    """The generator's answer texts, scored as predictions, must score perfectly."""
    from bopask_gen.evaluation.evaluate import evaluate
    out, _, records = full_build
    preds = tmp_path / 'gt_preds.jsonl'
    preds.write_text(''.join(json.dumps({'id': r['id'], 'text': r['conversations'][1]['value']})
                             + '\n' for r in records))
    report, _ = evaluate(out, preds, progress=False)
    assert report['traj_sr']['value'] == 1.0, report['traj_sr']
    assert report['grasp_nce']['value'] < 0.05, report['grasp_nce']
    assert report['pose_iou']['value'] > 0.98, report['pose_iou']
    assert report['spatial_acc']['value'] == 1.0 and report['depth_acc']['value'] == 1.0
    assert all(n == 0 for n in report['parse_failures'].values()), report['parse_failures']
