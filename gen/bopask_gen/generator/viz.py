"""``bopask-gen viz OUT_DIR``: draw generated answers over their images as PNG files.

For each task a sample of records is drawn: pose (cuboid edges, bottom face blue, top
green, corner 0 marked), grasp (5 keypoints, finger lines and the palm line), trajectory
(waypoint polyline with start/end marks), rearrangement (a cross on each blocker point),
spatial/depth (the two object centres and the Yes/No relation as text). The question and
answer are printed on a band below the image. Records are chosen round-robin over tasks.
"""

from collections import defaultdict
import logging
from pathlib import Path
import textwrap

import cv2
import numpy as np

from bopask_gen.generator.questions import TASKS
from bopask_gen.generator.shards import read_jsonl, shard_paths

LOG = logging.getLogger('bopask_gen.viz')
CUBOID_EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
                (0, 4), (1, 5), (2, 6), (3, 7)]
BLUE, GREEN, RED, YELLOW, WHITE, MAGENTA, CYAN = (
    (255, 80, 0), (0, 200, 0), (0, 0, 255), (0, 220, 255), (255, 255, 255), (255, 0, 255),
    (255, 255, 0))  # BGR


def add_arguments(parser):
    """Add the viz options to ``parser``."""
    parser.add_argument('out_dir', metavar='OUT_DIR', help='a folder made by bopask-gen build')
    parser.add_argument('--n', type=int, default=20, help='how many records to draw (20)')
    parser.add_argument('--out', default=None, help='PNG folder (default OUT_DIR/viz)')
    parser.add_argument('--tasks', default=','.join(TASKS), help='tasks to draw (all)')


def _pt(p):
    return int(round(float(p[0]))), int(round(float(p[1])))


def draw_pose(img, target):
    """Cuboid edges: bottom face blue, top face green, verticals yellow; corner 0 circled."""
    pts = np.asarray(target['points'], dtype=float)
    for i, j in CUBOID_EDGES:
        colour = BLUE if i < 4 and j < 4 else GREEN if i >= 4 else YELLOW
        cv2.line(img, _pt(pts[i]), _pt(pts[j]), colour, 2, cv2.LINE_AA)
    cv2.circle(img, _pt(pts[0]), 5, RED, -1, cv2.LINE_AA)


def draw_grasp(img, target):
    """Fingers (base->tip) left magenta, right cyan; palm line between the bases; centre."""
    c, lb, rb, lt, rt = np.asarray(target['points'], dtype=float)
    cv2.line(img, _pt(lb), _pt(rb), YELLOW, 2, cv2.LINE_AA)
    cv2.line(img, _pt(lb), _pt(lt), MAGENTA, 3, cv2.LINE_AA)
    cv2.line(img, _pt(rb), _pt(rt), CYAN, 3, cv2.LINE_AA)
    cv2.line(img, _pt((lb + rb) / 2), _pt(c), YELLOW, 1, cv2.LINE_AA)
    cv2.circle(img, _pt(c), 4, RED, -1, cv2.LINE_AA)
    for alt in target.get('alternatives', []):
        for p in alt['points'][:1]:
            cv2.circle(img, _pt(p), 3, WHITE, 1, cv2.LINE_AA)


def draw_trajectory(img, target):
    """Waypoint polyline: green start, red end, arrows along the way."""
    pts = np.asarray(target['points'], dtype=float)
    for a, b in zip(pts[:-1], pts[1:]):
        cv2.arrowedLine(img, _pt(a), _pt(b), YELLOW, 2, cv2.LINE_AA, tipLength=0.08)
    cv2.circle(img, _pt(pts[0]), 6, GREEN, -1, cv2.LINE_AA)
    cv2.circle(img, _pt(pts[-1]), 6, RED, -1, cv2.LINE_AA)


def draw_rearrangement(img, target):
    """A green dot on the target object, a red cross on each blocker point."""
    if target.get('target_px'):
        cv2.circle(img, _pt(target['target_px']), 7, GREEN, -1, cv2.LINE_AA)
    for p in target['points']:
        cv2.drawMarker(img, _pt(p), RED, cv2.MARKER_TILTED_CROSS, 18, 3, cv2.LINE_AA)


def draw_relation(img, target):
    """Object centres: A green, B blue, an arrow A -> B; the relation is in the text band."""
    centres = target.get('centres_px')
    if not centres:
        return
    a, b = np.asarray(centres, dtype=float)
    cv2.arrowedLine(img, _pt(a), _pt(b), YELLOW, 2, cv2.LINE_AA, tipLength=0.05)
    cv2.circle(img, _pt(a), 7, GREEN, -1, cv2.LINE_AA)
    cv2.circle(img, _pt(b), 7, BLUE, -1, cv2.LINE_AA)
    cv2.putText(img, 'A', _pt(a + [8, -8]), cv2.FONT_HERSHEY_SIMPLEX, 0.6, GREEN, 2)
    cv2.putText(img, 'B', _pt(b + [8, -8]), cv2.FONT_HERSHEY_SIMPLEX, 0.6, BLUE, 2)


DRAWERS = {'pose': draw_pose, 'grasp': draw_grasp, 'trajectory': draw_trajectory,
           'rearrangement': draw_rearrangement, 'spatial': draw_relation,
           'depth': draw_relation}


def _text_band(width, lines):
    line_h = 18
    band = np.full((line_h * len(lines) + 10, width, 3), 30, dtype=np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(band, line, (6, 16 + i * line_h), cv2.FONT_HERSHEY_SIMPLEX, 0.45, WHITE, 1,
                    cv2.LINE_AA)
    return band


def render_record(out_dir, record):
    """Return a BGR image: the record's image with its answer drawn and a text band below."""
    path = Path(out_dir) / record['image']
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'{path}: image of record {record["id"]} missing or unreadable')
    DRAWERS[record['task']](img, record['target'])
    question = record['conversations'][0]['value'].replace('<image>\n', '')
    answer = record['conversations'][1]['value']
    chars = max(40, img.shape[1] // 8)
    lines = [f'[{record["task"]}] {record["id"]}']
    lines += textwrap.wrap('Q: ' + question, chars) + textwrap.wrap('A: ' + answer, chars)
    return np.vstack([img, _text_band(img.shape[1], lines)])


def pick_records(out_dir, n, tasks=TASKS):
    """Up to ``n`` records, round-robin over tasks, in shard order within each task."""
    by_task = defaultdict(list)
    for path in shard_paths(out_dir):
        for record in read_jsonl(path):
            if record['task'] in tasks:
                by_task[record['task']].append(record)
    picked = []
    queues = [by_task[t] for t in tasks if by_task[t]]
    while queues and len(picked) < n:
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
        queues = [qu for qu in queues if qu]
    return picked


def visualize(out_dir, n=20, dest=None, tasks=TASKS):
    """Write PNGs of ``n`` records to ``dest`` (default OUT_DIR/viz); return their paths."""
    out_dir = Path(out_dir)
    if not shard_paths(out_dir):
        raise FileNotFoundError(f'{out_dir / "data"}: no shards (is it a bopask-gen build '
                                'output folder?)')
    dest = Path(dest) if dest else out_dir / 'viz'
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for record in pick_records(out_dir, n, tasks):
        path = dest / f'{record["id"]}.png'
        cv2.imwrite(str(path), render_record(out_dir, record))
        written.append(path)
    return written


def run(args):
    """Draw the records; return 0, or 2 when OUT_DIR has nothing to draw."""
    tasks = tuple(t for t in args.tasks.split(',') if t)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        LOG.error('unknown tasks %s; choose from %s', unknown, ','.join(TASKS))
        return 2
    try:
        written = visualize(args.out_dir, args.n, args.out, tasks)
    except FileNotFoundError as exc:
        LOG.error('%s', exc)
        return 2
    if not written:
        LOG.error('no records of tasks %s in %s', ','.join(tasks), args.out_dir)
        return 2
    print(f'wrote {len(written)} PNGs to {written[0].parent}')
    return 0
