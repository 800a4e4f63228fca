"""Test helper: small BOP-ASK datasets (issue 3 record format) from the real BOP subset.

Used by the eval and fine-tuning tests while they must not depend on ``bopask-gen build``.
Targets come straight from the BOP ground truth: pose = the projected models_info cuboid,
spatial/depth = comparisons of the objects' 3D centres, trajectory = a straight path
between two object centres (kept only when its midpoint is not on a third object, checked
on the visible masks), rearrangement = objects whose visible box overlaps the target's,
grasp = a top-down parallel-jaw grasp over the object centre. They are exact in their
format, which is all the evaluator reads; they are not the generator's answers.
"""

import json
from pathlib import Path
import shutil

import numpy as np

from bopask_gen.core import gripper
from bopask_gen.core.answer_format import format_points, format_yes_no, NO_POINTS_TEXT
from bopask_gen.core.bop import BopDataset
from bopask_gen.core.camera import project_points
from bopask_gen.core.transforms import make_transform, transform_points

ALL_TASKS = ('pose', 'grasp', 'trajectory', 'rearrangement', 'spatial', 'depth')


def _record(qid, frame, image, size, coords, task, objects, question, answer, target):
    return {
        'id': qid, 'image': image, 'image_size': list(size), 'coords': coords,
        'conversations': [{'from': 'human', 'value': '<image>\n' + question},
                          {'from': 'gpt', 'value': answer}],
        'task': task, 'dataset': frame.dataset, 'split': frame.split,
        'scene_id': frame.scene_id, 'im_id': frame.im_id, 'objects': objects, 'target': target,
    }


def _snap_into_mask(mask):
    v, u = np.nonzero(mask)
    c = np.array([u.mean(), v.mean()])
    i = np.argmin((u - c[0]) ** 2 + (v - c[1]) ** 2)
    return [float(u[i]), float(v[i])]


def frame_records(ds, frame, image, size, coords, tasks):
    """All fixture QAs of one frame."""
    w, h = size
    fmt = lambda pts: format_points(pts, coords, w, h)  # noqa: E731
    objs = [g for g in frame.gts if ds.has_model(g.obj_id)]
    centres = {g.gt_index: g.T_m2c[:3, 3] for g in objs}
    masks = {g.gt_index: frame.mask_visib(g.gt_index) for g in objs}
    prefix = f'{frame.dataset}_{frame.scene_id:06d}_{frame.im_id:06d}'
    out = []
    for g in objs:
        name = f'object {g.obj_id}'
        if 'pose' in tasks:
            corners = transform_points(g.T_m2c, ds.models_info[g.obj_id].cuboid_corners())
            px = project_points(corners, frame.K)
            out.append(_record(f'{prefix}_pose_{g.gt_index}', frame, image, size, coords, 'pose',
                               [g.gt_index], f'Locate the cuboid corners of the {name}.',
                               fmt(px), {'points': px.tolist()}))
        if 'grasp' in tasks:
            # Approach along the optical axis, fingers closing along image x; left = smaller u.
            R = np.column_stack([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
            T = make_transform(R, centres[g.gt_index])
            width = float(min(ds.models_info[g.obj_id].bbox_size.min(), gripper.MAX_OPENING))
            px = project_points(gripper.grasp_keypoints(T, width), frame.K)
            out.append(_record(f'{prefix}_grasp_{g.gt_index}', frame, image, size, coords,
                               'grasp', [g.gt_index], f'How can I grasp the {name}?', fmt(px),
                               {'points': px.tolist(), 'pose_cam': T.tolist(), 'width': width}))
        if 'rearrangement' in tasks:
            bx = g.bbox_visib
            blockers = [o.gt_index for o in objs if o is not g and _overlap(bx, o.bbox_visib)]
            pts = [_snap_into_mask(masks[b]) for b in blockers]
            out.append(_record(f'{prefix}_rearrangement_{g.gt_index}', frame, image, size,
                               coords, 'rearrangement', [g.gt_index],
                               f'Which objects do you move first to grab the {name}?',
                               fmt(pts) if pts else NO_POINTS_TEXT,
                               {'blockers': blockers, 'points': pts}))
    for a in objs:
        for b in objs:
            if a is b:
                continue
            ca, cb = centres[a.gt_index], centres[b.gt_index]
            pair = [a.gt_index, b.gt_index]
            tag = f'{a.gt_index}_{b.gt_index}'
            if 'spatial' in tasks and abs(ca[0] - cb[0]) > 0.03:
                ans = bool(ca[0] > cb[0])
                out.append(_record(f'{prefix}_spatial_{tag}', frame, image, size, coords,
                                   'spatial', pair, f'Is object {a.obj_id} to the right of '
                                   f'object {b.obj_id}?', format_yes_no(ans),
                                   {'answer': ans, 'relation': 'right'}))
            da, db = np.linalg.norm(ca), np.linalg.norm(cb)
            if 'depth' in tasks and abs(da - db) > 0.03:
                ans = bool(da < db)
                out.append(_record(f'{prefix}_depth_{tag}', frame, image, size, coords,
                                   'depth', pair, f'Is object {a.obj_id} closer to you than '
                                   f'object {b.obj_id}?', format_yes_no(ans),
                                   {'answer': ans, 'relation': 'closer'}))
            if 'trajectory' in tasks:
                path = np.array([ca, (ca + cb) / 2.0, cb])
                px = project_points(path, frame.K)
                mid = np.round(px[1]).astype(int)
                if any(masks[o.gt_index][mid[1], mid[0]] for o in objs
                       if o.gt_index not in pair):
                    continue
                out.append(_record(f'{prefix}_trajectory_{tag}', frame, image, size, coords,
                                   'trajectory', pair, f'Show me how to move object {a.obj_id} '
                                   f'to the location of object {b.obj_id}.', fmt(px),
                                   {'points': px.tolist(), 'points_cam': path.tolist()}))
    return out


def _overlap(a, b):
    if a is None or b is None or a[2] <= 0 or b[2] <= 0:
        return False
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and \
        b[1] < a[1] + a[3]


def write_fixture_dataset(bop_dir, out_dir, tasks=ALL_TASKS, coords='pixel', max_frames=None,
                          with_summary=True):
    """Write ``out_dir/data/fixture.jsonl`` + images (+ summary.json); return the records."""
    ds = BopDataset(bop_dir)
    out_dir = Path(out_dir)
    (out_dir / 'data').mkdir(parents=True, exist_ok=True)
    (out_dir / 'images').mkdir(exist_ok=True)
    records = []
    for i, frame in enumerate(ds.frames(ds.splits()[0])):
        if max_frames is not None and i >= max_frames:
            break
        src = frame.image_path('rgb')
        image = f'images/{frame.scene_id:06d}_{frame.im_id:06d}{src.suffix}'
        shutil.copyfile(src, out_dir / image)
        h, w = frame.rgb().shape[:2]
        records += frame_records(ds, frame, image, (w, h), coords, tasks)
    with open(out_dir / 'data' / 'fixture.jsonl', 'w', encoding='utf-8') as f:
        for rec in records:
            f.write(json.dumps(rec) + '\n')
    if with_summary:
        counts = {t: sum(r['task'] == t for r in records) for t in ALL_TASKS}
        (out_dir / 'summary.json').write_text(json.dumps(
            {'dataset_dir': str(Path(bop_dir).resolve()), 'counts': counts}))
    return records
