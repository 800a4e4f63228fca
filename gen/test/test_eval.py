"""``bopask-gen eval`` on datasets written from the real YCB-V frames."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

from bopask_gen.cli import main
from bopask_gen.evaluation.evaluate import evaluate, EXPECTED_POINTS, METRIC_KEYS, TASKS

_spec = importlib.util.spec_from_file_location('bopask_qa_fixtures',
                                               Path(__file__).with_name('qa_fixtures.py'))
qa_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qa_fixtures)


@pytest.fixture(scope='module')
def dataset(ycbv_subset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('qa_pixel')
    return out, qa_fixtures.write_fixture_dataset(ycbv_subset_dir, out, max_frames=4)


def _write_preds(path, records, text_of):
    with open(path, 'w') as f:
        for rec in records:
            f.write(json.dumps({'id': rec['id'], 'text': text_of(rec)}) + '\n')
    return path


def _exact_text(rec):
    """The target itself, in full float precision (pixel coordinates)."""
    t = rec['target']
    if rec['task'] in ('spatial', 'depth'):
        return 'Yes' if t['answer'] else 'No'
    if not t['points']:
        return 'None: nothing needs to be moved.'
    return '[' + ', '.join(f'({u!r}, {v!r})' for u, v in t['points']) + ']'


def test_fixture_covers_every_task(dataset):
    _, records = dataset
    counts = {t: sum(r['task'] == t for r in records) for t in TASKS}
    assert all(n > 0 for n in counts.values()), counts
    assert any(r['task'] == 'rearrangement' and not r['target']['blockers'] for r in records)


def test_target_derived_predictions_score_perfectly(dataset, tmp_path):
    out, records = dataset
    report, _ = evaluate(out, _write_preds(tmp_path / 'p.jsonl', records, _exact_text),
                         progress=False)
    assert report['pose_iou']['value'] == pytest.approx(1.0)
    assert report['pose_iou_3d']['value'] == pytest.approx(1.0)
    assert report['pose_iou_3d']['n'] == report['pose_iou']['n'] > 0
    assert report['grasp_nce']['value'] == pytest.approx(0.0, abs=1e-9)
    assert report['traj_sr']['value'] == 1.0 and report['traj_sr']['n'] > 0
    assert report['traj_dist']['value'] == pytest.approx(0.0, abs=1e-6)
    assert report['rearr_recall']['value'] == 1.0 and report['rearr_none_acc']['value'] == 1.0
    assert report['spatial_acc']['value'] == 1.0 and report['depth_acc']['value'] == 1.0
    assert sum(report['parse_failures'].values()) == 0


def test_dataset_answer_texts_score_near_perfectly_in_norm1000(ycbv_subset_dir, tmp_path):
    records = qa_fixtures.write_fixture_dataset(ycbv_subset_dir, tmp_path / 'd',
                                                coords='norm1000', max_frames=2)
    preds = _write_preds(tmp_path / 'p.jsonl', records, lambda r: r['conversations'][1]['value'])
    report, _ = evaluate(tmp_path / 'd', preds, progress=False)
    # 0-1000 integers round by up to 0.32 px here.
    assert report['pose_iou']['value'] > 0.97
    assert report['grasp_nce']['value'] < 0.1
    assert report['traj_dist']['value'] < 0.5 and report['traj_sr']['value'] == 1.0
    assert report['spatial_acc']['value'] == 1.0 and report['rearr_recall']['value'] == 1.0


def test_constant_baseline_scores_badly(dataset, tmp_path):
    out, records = dataset

    def constant(rec):
        if rec['task'] in ('spatial', 'depth'):
            return 'Yes'
        return '[' + ', '.join(['(320, 240)'] * EXPECTED_POINTS.get(rec['task'], 3)) + ']'

    report, _ = evaluate(out, _write_preds(tmp_path / 'p.jsonl', records, constant),
                         progress=False)
    assert report['pose_iou']['value'] == 0.0  # a point has no area
    assert report['pose_iou_3d']['value'] == 0.0
    assert report['grasp_nce']['value'] > 1.0
    assert report['traj_sr']['value'] == 0.0 and report['traj_dist']['value'] > 30
    share_yes = np.mean([r['target']['answer'] for r in records if r['task'] == 'spatial'])
    assert report['spatial_acc']['value'] == pytest.approx(share_yes) and share_yes < 0.8
    assert sum(report['parse_failures'].values()) == 0


def test_garbage_text_is_a_failure_everywhere(dataset, tmp_path):
    out, records = dataset
    preds = _write_preds(tmp_path / 'p.jsonl', records, lambda r: 'I cannot see that, sorry.')
    report, scores = evaluate(out, preds, progress=False)
    assert report['parse_failures'] == report['counts']
    assert report['pose_iou']['value'] == 0.0
    assert math.isinf(report['grasp_nce']['value']) and math.isinf(report['traj_dist']['value'])
    assert report['grasp_nce_parsed']['n'] == 0 and report['grasp_nce_parsed']['value'] is None
    assert report['traj_sr']['value'] == 0.0 and report['rearr_recall']['value'] == 0.0
    assert report['spatial_acc']['value'] == 0.0 and report['depth_acc']['value'] == 0.0
    assert not any(s['parsed'] for s in scores)


def test_other_models_formats_and_coords_override(dataset, tmp_path):
    out, records = dataset
    traj = [r for r in records if r['task'] == 'trajectory'][:3]
    w, h = traj[0]['image_size']

    def molmo(rec):
        return ''.join(f'<point x="{100 * u / w:.4f}" y="{100 * v / h:.4f}">p</point>'
                       for u, v in rec['target']['points'])

    report, _ = evaluate(out, _write_preds(tmp_path / 'm.jsonl', traj, molmo), progress=False)
    assert report['traj_dist']['value'] < 0.1 and report['traj_sr']['value'] == 1.0
    assert report['missing_predictions'] == len(records) - 3

    def norm(rec):
        return '[' + ', '.join(f'({u / w:.5f}, {v / h:.5f})' for u, v in rec['target']['points']) \
            + ']'

    report, _ = evaluate(out, _write_preds(tmp_path / 'n.jsonl', traj, norm), coords='norm',
                         progress=False)
    assert report['traj_dist']['value'] < 0.1


def test_cli_writes_report_files(dataset, tmp_path, capsys):
    out, records = dataset
    preds = _write_preds(tmp_path / 'model_x.jsonl', records,
                         lambda r: 'garbage' if r['task'] == 'grasp' else _exact_text(r))
    assert main(['eval', '--data', str(out), '--pred', str(preds),
                 '--report', str(tmp_path / 'rep')]) == 0
    assert '| model_x |' in capsys.readouterr().out
    rep = json.loads((tmp_path / 'rep' / 'report.json').read_text())
    for key in METRIC_KEYS:
        assert 'n' in rep[key] and 'value' in rep[key]
    assert rep['grasp_nce']['value'] == 'inf' and rep['parse_failures']['grasp'] > 0
    md = (tmp_path / 'rep' / 'report.md').read_text()
    assert '| model | pose IoU | traj SR | traj dist | NCE | spatial | depth | rearr. recall |' \
        in md
    with Image.open(tmp_path / 'rep' / 'report.png') as img:
        assert img.size[0] > 600 and img.size[1] > 200
    lines = (tmp_path / 'rep' / 'scores.jsonl').read_text().splitlines()
    assert len(lines) == len(records)


def test_without_source_dataset_mask_metrics_are_left_out(ycbv_subset_dir, tmp_path):
    records = qa_fixtures.write_fixture_dataset(ycbv_subset_dir, tmp_path / 'd', max_frames=1,
                                                tasks=('pose', 'trajectory'),
                                                with_summary=False)
    preds = _write_preds(tmp_path / 'p.jsonl', records, _exact_text)
    report, _ = evaluate(tmp_path / 'd', preds, progress=False)
    assert report['traj_sr']['n'] == 0 and report['pose_iou_3d']['n'] == 0
    assert report['unscored_no_source']['traj_sr'] == report['counts']['trajectory'] > 0
    assert report['traj_dist']['value'] == pytest.approx(0.0, abs=1e-6)
    report, _ = evaluate(tmp_path / 'd', preds, bop_dirs=[ycbv_subset_dir], progress=False)
    assert report['traj_sr']['value'] == 1.0 and report['pose_iou_3d']['value'] == \
        pytest.approx(1.0)


def test_bad_inputs_are_refused_with_a_message(dataset, tmp_path, capsys):
    out, records = dataset
    assert main(['eval', '--data', str(tmp_path / 'nope'), '--pred', 'x.jsonl']) == 2
    assert 'dataset folder not found' in capsys.readouterr().err
    unknown = _write_preds(tmp_path / 'u.jsonl', [{'id': 'not-a-qa'}], lambda r: 'Yes')
    assert main(['eval', '--data', str(out), '--pred', str(unknown)]) == 2
    assert 'not-a-qa' in capsys.readouterr().err
    bad = tmp_path / 'bad.jsonl'
    bad.write_text(json.dumps({'id': records[0]['id'], 'text': 'Yes'}) + '\n{oops\n')
    assert main(['eval', '--data', str(out), '--pred', str(bad)]) == 2
    assert 'bad.jsonl:2: invalid JSON' in capsys.readouterr().err
    dup = tmp_path / 'dup.jsonl'
    dup.write_text(2 * (json.dumps({'id': records[0]['id'], 'text': 'Yes'}) + '\n'))
    assert main(['eval', '--data', str(out), '--pred', str(dup)]) == 2
    assert 'duplicate prediction' in capsys.readouterr().err
    nokey = tmp_path / 'nokey.jsonl'
    nokey.write_text(json.dumps({'id': records[0]['id']}) + '\n')
    assert main(['eval', '--data', str(out), '--pred', str(nokey)]) == 2
    assert "lacks key 'text'" in capsys.readouterr().err
