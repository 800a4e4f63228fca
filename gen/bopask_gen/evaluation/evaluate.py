"""``bopask-gen eval``: score model answers on a BOP-ASK dataset with the paper's metrics.

Inputs: the generator's output folder (``OUT_DIR/data/*.jsonl`` records, issue 3 format) and
a predictions JSONL with one ``{"id", "text"}`` per answered QA (``bopask-gen predict``
writes it). Each text is parsed with :mod:`bopask_gen.core.answer_format` in the coordinate
format of the record (``coords``; ``--coords`` overrides it for a model that answers in
another one); Molmo and Gemini point syntaxes are recognised as well. An answer that cannot
be parsed, or has the wrong number of points, is a failure: IoU 0, NCE and distance inf,
trajectory not successful, no blocker hit, Yes/No wrong.

What needs more than the record: the trajectory success rate and the rearrangement recall
need object masks, and the 3D pose IoU needs the true cuboid in 3D. Both come from the
source BOP dataset of the records (``mask_visib``/``mask`` PNGs, ``scene_gt.json``,
``models_info.json``), found through ``--bop DIR`` (the folder whose name is the records'
``dataset``) or the ``dataset_dir`` key of ``OUT_DIR/manifest.json`` (``bopask-gen build``
writes it) or ``summary.json``. A pose target that carries ``points_cam`` (8x3, metres) is
used as is (the camera matrix still comes from the source, or a record key ``K``). Records
whose source cannot be found are left out of those three metrics only, with a warning and
their count in the report.

Masks: the start and end of a trajectory are checked against the full silhouettes of A and
B (``mask/``, falling back to ``mask_visib/``), since the path starts at A's centre even
where A is partly hidden; "another object" means the visible mask of any other annotated
instance of the frame; blockers are hit on their visible masks. ``--mask-tolerance`` pixels
grow the masks an endpoint or blocker must hit and shrink those a waypoint must avoid.

Aggregation (report.json values are fractions, report.md shows x100 like the paper):
pose/3D IoU, NCE and trajectory distance are means over QAs (one failed answer makes NCE
and distance inf, as in the paper; ``*_parsed`` variants average the parsed answers only);
trajectory success and Yes/No accuracies are shares of QAs; rearrangement recall is the
share of all ground-truth blockers hit (questions without blockers are scored separately as
``rearr_none_acc``: right when the answer says nothing must move).
"""

import json
import logging
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bopask_gen.core.answer_format import COORD_FORMATS, parse_points, parse_yes_no
from bopask_gen.core.errors import AnswerParseError, BopFormatError
from bopask_gen.evaluation import metrics

LOG = logging.getLogger(__name__)
TASKS = ('pose', 'grasp', 'trajectory', 'rearrangement', 'spatial', 'depth')
METRIC_KEYS = ('pose_iou', 'pose_iou_3d', 'grasp_nce', 'traj_sr', 'traj_dist',
               'rearr_recall', 'spatial_acc', 'depth_acc')
EXPECTED_POINTS = {'pose': 8, 'grasp': 5}
DEFAULT_MASK_TOLERANCE = 5.0
# Columns of the paper's table (SPEC.md section 3): (header, key, x100?).
PAPER_COLUMNS = (
    ('pose IoU', 'pose_iou', True), ('traj SR', 'traj_sr', True),
    ('traj dist', 'traj_dist', False), ('NCE', 'grasp_nce', False),
    ('spatial', 'spatial_acc', True), ('depth', 'depth_acc', True),
    ('rearr. recall', 'rearr_recall', True),
)


class EvalInputError(ValueError):
    """A dataset or prediction file that cannot be evaluated (the message names it)."""


# --------------------------------------------------------------------------- inputs


def read_jsonl(path, what):
    """Yield (line number, object) of a JSONL file; bad JSON raises EvalInputError."""
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f'{path}: {what} file not found')
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalInputError(f'{path}:{number}: invalid JSON ({exc})') from exc
            if not isinstance(obj, dict):
                raise EvalInputError(f'{path}:{number}: expected a JSON object')
            yield number, obj


def dataset_shards(data_dir):
    """Sorted JSONL shards of a generator output folder (``OUT_DIR/data/*.jsonl``)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise EvalInputError(f'{data_dir}: dataset folder not found')
    shards = sorted((data_dir / 'data').glob('*.jsonl'))
    if not shards:
        raise EvalInputError(f'{data_dir / "data"}: no *.jsonl shards (is this a bopask-gen '
                             'build output folder?)')
    return shards


def load_records(data_dir):
    """Return the dataset's QA records in shard order, checked for the keys eval needs."""
    records, seen = [], set()
    for shard in dataset_shards(data_dir):
        for number, rec in read_jsonl(shard, 'dataset shard'):
            for key in ('id', 'task', 'target', 'image'):
                if key not in rec:
                    raise EvalInputError(f'{shard}:{number}: record lacks key {key!r}')
            if rec['task'] not in TASKS:
                raise EvalInputError(f'{shard}:{number}: unknown task {rec["task"]!r}')
            if rec['id'] in seen:
                raise EvalInputError(f'{shard}:{number}: duplicate QA id {rec["id"]!r}')
            seen.add(rec['id'])
            records.append(rec)
    return records


def load_predictions(path):
    """Return {id: text} of a predictions JSONL; duplicates and missing keys are errors."""
    preds = {}
    for number, obj in read_jsonl(path, 'predictions'):
        for key in ('id', 'text'):
            if key not in obj:
                raise EvalInputError(f'{path}:{number}: prediction lacks key {key!r}')
        if obj['id'] in preds:
            raise EvalInputError(f'{path}:{number}: duplicate prediction for {obj["id"]!r}')
        preds[obj['id']] = '' if obj['text'] is None else str(obj['text'])
    return preds


def image_size(record, data_dir):
    """(width, height) of a record's image: its ``image_size`` key, else read from the file."""
    if 'image_size' in record:
        w, h = record['image_size']
        return int(w), int(h)
    from PIL import Image
    path = Path(data_dir) / record['image']
    try:
        with Image.open(path) as img:
            return img.size
    except OSError as exc:
        raise EvalInputError(f'{path}: cannot read image of QA {record["id"]!r} ({exc})') from exc


# --------------------------------------------------------------------------- ground truth


class SourceGroundTruth:
    """Masks, camera and 3D cuboids of the records' frames, read from the source BOP data."""

    def __init__(self, bop_dirs=(), data_dir=None):
        from bopask_gen.core.bop import BopDataset
        self._datasets = {}
        for d in bop_dirs:
            ds = BopDataset(d)
            self._datasets[ds.name] = ds
        for name in ('manifest.json', 'summary.json') if data_dir is not None else ():
            path = Path(data_dir) / name
            source = None
            if path.is_file():
                try:
                    source = json.loads(path.read_text()).get('dataset_dir')
                except (json.JSONDecodeError, AttributeError):
                    LOG.warning('%s: unreadable, ignoring its dataset_dir', path)
            if source and Path(source).is_dir():
                ds = BopDataset(source)
                self._datasets.setdefault(ds.name, ds)
            elif source:
                LOG.warning('%s: dataset_dir %s not found; pass --bop DIR', path, source)
        self._single = next(iter(self._datasets.values())) if len(self._datasets) == 1 else None
        self._scenes = {}
        self._masks = {}

    def available(self):
        """True when at least one source dataset is known."""
        return bool(self._datasets)

    def _dataset(self, record):
        ds = self._datasets.get(record.get('dataset'))
        return ds if ds is not None else self._single

    def frame(self, record):
        """The record's BOP Frame, or None when its source dataset is unknown."""
        ds = self._dataset(record)
        if ds is None:
            return None
        for key in ('split', 'scene_id', 'im_id'):
            if key not in record:
                raise EvalInputError(f'QA {record["id"]!r} lacks key {key!r} needed to find its '
                                     'frame in the source dataset')
        key = (ds.name, record['split'], int(record['scene_id']))
        if key not in self._scenes:
            self._scenes[key] = ds.scene(record['split'], int(record['scene_id']))
        return self._scenes[key].frame(int(record['im_id']))

    def mask(self, frame, gt_index, full=False):
        """Boolean mask of one instance: full silhouette (fallback visible) or visible part."""
        key = (str(frame.scene_dir), frame.im_id, gt_index, full)
        if key not in self._masks:
            if full and frame.mask_path(gt_index, visible=False).is_file():
                self._masks[key] = frame.mask(gt_index)
            else:
                self._masks[key] = frame.mask_visib(gt_index)
            if len(self._masks) > 256:  # records come frame by frame; keep memory bounded
                self._masks.pop(next(iter(self._masks)))
        return self._masks[key]

    def corners_cam(self, record, frame):
        """True cuboid corners (8, 3) in the camera frame, ordered like target['points']."""
        from scipy.optimize import linear_sum_assignment

        from bopask_gen.core.camera import project_points
        from bopask_gen.core.transforms import transform_points
        target = record['target']
        if 'points_cam' in target:
            return np.asarray(target['points_cam'], dtype=float).reshape(8, 3)
        gt = frame.gts[int(record['objects'][0])]
        ds = self._dataset(record)
        corners = transform_points(gt.T_m2c, ds.models_info[gt.obj_id].cuboid_corners())
        # The generator orders corners bottom-first in its world frame; recover that order by
        # matching the projections to the answer's pixels.
        proj = project_points(corners, frame.K)
        cost = np.linalg.norm(np.asarray(target['points'], float)[:, None] - proj[None], axis=2)
        rows, cols = linear_sum_assignment(cost)
        if cost[rows, cols].max() > 2.0:
            raise EvalInputError(f'QA {record["id"]!r}: pose target does not match the projected '
                                 f'GT cuboid of gt index {record["objects"][0]} (off by '
                                 f'{cost[rows, cols].max():.1f} px)')
        return corners[cols]


# --------------------------------------------------------------------------- scoring


def _points(text, coords, size, expected=None):
    """Parsed pixels or None when the text is no valid answer."""
    try:
        return parse_points(text, coords, size[0], size[1], expected=expected)
    except AnswerParseError:
        return None


def score_record(record, text, coords, size, source=None, tolerance=DEFAULT_MASK_TOLERANCE):
    """Score one answer; return a dict with 'task', 'parsed' and the task's metric values.

    ``text`` None means no prediction exists (scored as a failure). ``source`` is a
    SourceGroundTruth (or None) for masks and 3D cuboids.
    """
    task, target = record['task'], record['target']
    out = {'id': record['id'], 'task': task}
    text = '' if text is None else text
    frame = source.frame(record) if source is not None and source.available() else None
    if task in ('spatial', 'depth'):
        try:
            answer = parse_yes_no(text)
        except AnswerParseError:
            answer = None
        out['parsed'] = answer is not None
        out['correct'] = answer is not None and metrics.yes_no_correct(answer, target['answer'])
        return out
    pred = _points(text, coords, size, EXPECTED_POINTS.get(task))
    out['parsed'] = pred is not None
    if task == 'pose':
        gt = np.asarray(target['points'], float)
        out['iou'] = metrics.FAILED_IOU if pred is None else metrics.pose_iou_2d(pred, gt)
        K = frame.K if frame is not None else record.get('K', record.get('cam_K'))
        if K is not None and (frame is not None or 'points_cam' in target):
            corners = source.corners_cam(record, frame) if 'points_cam' not in target else \
                np.asarray(target['points_cam'], float).reshape(8, 3)
            out['iou_3d'] = metrics.FAILED_IOU if pred is None else \
                metrics.pose_iou_3d(pred, corners, np.asarray(K, float).reshape(3, 3))
    elif task == 'grasp':
        out['nce'] = metrics.FAILED_NCE if pred is None else \
            metrics.grasp_nce(pred, np.asarray(target['points'], float))
    elif task == 'trajectory':
        gt = np.asarray(target['points'], float)
        ok = pred is not None and len(pred) > 0
        out['parsed'] = ok
        out['dist'] = metrics.path_distance(pred, gt) if ok else metrics.FAILED_DIST
        if frame is not None:
            a, b = (int(i) for i in record['objects'][:2])
            others = [source.mask(frame, g.gt_index) for g in frame.gts
                      if g.gt_index not in (a, b)]
            out['success'] = ok and metrics.trajectory_success(
                pred, source.mask(frame, a, full=True), source.mask(frame, b, full=True),
                others, tolerance)
    elif task == 'rearrangement':
        blockers = [int(i) for i in target.get('blockers', [])]
        out['n_blockers'] = len(blockers)
        if not blockers:
            out['none_correct'] = pred is not None and len(pred) == 0
        elif frame is not None:
            hits = metrics.blockers_hit(pred if pred is not None else np.zeros((0, 2)),
                                        [source.mask(frame, i) for i in blockers], tolerance)
            out['hits'] = int(hits.sum())
    return out


def _mean(values, inf_if_any=False):
    vals = [float(v) for v in values]
    if not vals:
        return None
    if inf_if_any and any(math.isinf(v) for v in vals):
        return math.inf
    return float(np.mean(vals))


def aggregate(scores, n_missing=0):
    """Summarize per-QA scores into the report dict (keys METRIC_KEYS plus extras)."""
    by = {t: [s for s in scores if s['task'] == t] for t in TASKS}

    def metric(values, inf_if_any=False):
        values = list(values)
        return {'value': _mean(values, inf_if_any), 'n': len(values)}

    report = {
        'pose_iou': metric(s['iou'] for s in by['pose']),
        'pose_iou_3d': metric(s['iou_3d'] for s in by['pose'] if 'iou_3d' in s),
        'grasp_nce': metric((s['nce'] for s in by['grasp']), inf_if_any=True),
        'grasp_nce_parsed': metric(s['nce'] for s in by['grasp'] if s['parsed']),
        'traj_sr': metric(float(s['success']) for s in by['trajectory'] if 'success' in s),
        'traj_dist': metric((s['dist'] for s in by['trajectory']), inf_if_any=True),
        'traj_dist_parsed': metric(s['dist'] for s in by['trajectory'] if s['parsed']),
        'spatial_acc': metric(float(s['correct']) for s in by['spatial']),
        'depth_acc': metric(float(s['correct']) for s in by['depth']),
        'rearr_none_acc': metric(float(s['none_correct']) for s in by['rearrangement']
                                 if 'none_correct' in s),
    }
    scored = [s for s in by['rearrangement'] if 'hits' in s]
    total = sum(s['n_blockers'] for s in scored)
    report['rearr_recall'] = {
        'value': sum(s['hits'] for s in scored) / total if total else None,
        'n': total, 'n_questions': len(scored),
    }
    report['parse_failures'] = {t: sum(not s['parsed'] for s in by[t]) for t in TASKS}
    report['counts'] = {t: len(by[t]) for t in TASKS}
    report['unscored_no_source'] = {
        'pose_iou_3d': sum('iou_3d' not in s for s in by['pose']),
        'traj_sr': sum('success' not in s for s in by['trajectory']),
        'rearr_recall': sum('hits' not in s and 'none_correct' not in s
                            for s in by['rearrangement']),
    }
    report['missing_predictions'] = n_missing
    return report


def evaluate(data_dir, pred_path, bop_dirs=(), coords=None, tolerance=DEFAULT_MASK_TOLERANCE,
             progress=True):
    """Score a predictions file on a dataset; return (report dict, per-QA scores)."""
    records = load_records(data_dir)
    preds = load_predictions(pred_path)
    known = {r['id'] for r in records}
    unknown = [i for i in preds if i not in known]
    if unknown:
        raise EvalInputError(f'{pred_path}: {len(unknown)} predictions for ids not in '
                             f'{data_dir} (first: {unknown[0]!r}); wrong dataset?')
    answered = [r for r in records if r['id'] in preds]
    if not answered:
        raise EvalInputError(f'{pred_path}: no prediction matches a QA of {data_dir}')
    n_missing = len(records) - len(answered)
    if n_missing:
        LOG.warning('%d of %d QAs have no prediction; they are left out', n_missing,
                    len(records))
    if coords is not None and coords not in COORD_FORMATS:
        raise EvalInputError(f'unknown coordinate format {coords!r}; use one of {COORD_FORMATS}')
    source = SourceGroundTruth(bop_dirs, data_dir)
    needs_source = {'trajectory', 'rearrangement'} & {r['task'] for r in answered}
    if needs_source and not source.available():
        LOG.warning('no source BOP dataset (--bop DIR, or dataset_dir in manifest.json): '
                    'trajectory success, rearrangement recall and 3D pose IoU are not scored')
    scores = []
    for rec in tqdm(answered, desc='eval', unit='QA', disable=not progress):
        size = image_size(rec, data_dir)
        rec_coords = coords or rec.get('coords', 'pixel')
        try:
            scores.append(score_record(rec, preds[rec['id']], rec_coords, size, source,
                                       tolerance))
        except (KeyError, IndexError, TypeError, ValueError, BopFormatError) as exc:
            raise EvalInputError(f'QA {rec["id"]!r} ({rec["task"]}): cannot score ({exc})') \
                from exc
    return aggregate(scores, n_missing), scores


# --------------------------------------------------------------------------- report


def _cell(entry, x100):
    value = entry['value']
    if value is None:
        return 'n/a'
    if math.isinf(value):
        return 'inf'
    return f'{value * 100:.1f}' if x100 else f'{value:.2f}'


def report_markdown(report, name):
    """The report as Markdown: the paper's table layout, then counts and parse failures."""
    heads = [h for h, _, _ in PAPER_COLUMNS]
    lines = [f'# BOP-ASK evaluation: {name}', '',
             'Values x100 except NCE and traj dist (pixels), as in the paper.', '',
             '| model | ' + ' | '.join(heads) + ' | pose IoU 3D |',
             '|---' * (len(heads) + 2) + '|',
             f'| {name} | ' + ' | '.join(_cell(report[k], x) for _, k, x in PAPER_COLUMNS)
             + f' | {_cell(report["pose_iou_3d"], True)} |', '',
             '| metric | value | n |', '|---|---|---|']
    for key in METRIC_KEYS + ('grasp_nce_parsed', 'traj_dist_parsed', 'rearr_none_acc'):
        x100 = key not in ('grasp_nce', 'traj_dist', 'grasp_nce_parsed', 'traj_dist_parsed')
        lines.append(f'| {key} | {_cell(report[key], x100)} | {report[key]["n"]} |')
    lines += ['', '| task | QAs | parse failures |', '|---|---|---|']
    for task in TASKS:
        lines.append(f'| {task} | {report["counts"][task]} | {report["parse_failures"][task]} |')
    skipped = {k: v for k, v in report['unscored_no_source'].items() if v}
    if skipped:
        lines += ['', f'Not scored for lack of the source BOP dataset: {skipped}']
    if report['missing_predictions']:
        lines += ['', f'QAs without a prediction (left out): {report["missing_predictions"]}']
    return '\n'.join(lines) + '\n'


def _json_safe(obj):
    if isinstance(obj, float) and math.isinf(obj):
        return 'inf'
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def plot_report(report, path, name):
    """Bar plot PNG: accuracies/IoU/recall (x100), NCE and trajectory distance."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = (
        ('higher is better (x100)', [('pose IoU', 'pose_iou'), ('pose IoU 3D', 'pose_iou_3d'),
                                     ('traj SR', 'traj_sr'), ('spatial', 'spatial_acc'),
                                     ('depth', 'depth_acc'), ('rearr. recall', 'rearr_recall')],
         100.0),
        ('grasp NCE (lower is better)', [('NCE', 'grasp_nce'), ('NCE parsed', 'grasp_nce_parsed')],
         1.0),
        ('traj dist, px (lower is better)', [('dist', 'traj_dist'),
                                             ('dist parsed', 'traj_dist_parsed')], 1.0),
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), gridspec_kw={'width_ratios': [3, 1, 1]})
    for ax, (title, items, scale) in zip(axes, panels):
        values = [report[k]['value'] for _, k in items]
        finite = [v * scale for v in values if v is not None and not math.isinf(v)]
        top = 100.0 if scale == 100.0 else max(finite + [1.0]) * 1.25
        for i, v in enumerate(values):
            if v is None:
                ax.text(i, top * 0.02, 'n/a', ha='center')
                continue
            h = top if math.isinf(v) else v * scale
            ax.bar(i, h, color='tab:red' if math.isinf(v) else 'tab:blue',
                   hatch='//' if math.isinf(v) else None)
            ax.text(i, min(h, top * 0.93) + top * 0.01,
                    'inf' if math.isinf(v) else (f'{h:.1f}' if scale == 100.0 else f'{h:.2f}'),
                    ha='center', fontsize=9)
        ax.set_xticks(range(len(items)), [f'{label}\nn={report[k]["n"]}' for label, k in items],
                      fontsize=8)
        ax.set_ylim(0, top)
        ax.set_title(title, fontsize=10)
    fig.suptitle(f'BOP-ASK evaluation: {name}')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report, scores, report_dir, name):
    """Write report.md, report.json, report.png and scores.jsonl (per QA) into a folder."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / 'report.md').write_text(report_markdown(report, name))
    (report_dir / 'report.json').write_text(
        json.dumps(_json_safe({'model': name, **report}), indent=2) + '\n')
    with open(report_dir / 'scores.jsonl', 'w', encoding='utf-8') as f:
        for s in scores:
            f.write(json.dumps(_json_safe(s)) + '\n')
    plot_report(report, report_dir / 'report.png', name)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser):
    """Arguments of ``bopask-gen eval``."""
    from bopask_gen.cli_common import add_qa_data_arguments
    add_qa_data_arguments(parser, __doc__)  # the recipe/definitions, shown by --help
    parser.add_argument('--pred', required=True, type=Path,
                        help='predictions JSONL, one {"id", "text"} per QA')
    parser.add_argument('--report', type=Path, default=None,
                        help='folder for report.md, report.json, report.png, scores.jsonl')
    parser.add_argument('--bop', type=Path, action='append', default=[],
                        help='source BOP dataset folder (repeatable) for masks and 3D cuboids; '
                             'default: dataset_dir of OUT_DIR/manifest.json or summary.json')
    parser.add_argument('--coords', choices=COORD_FORMATS, default=None,
                        help="read bare number pairs in this format instead of each record's "
                             '"coords" (for a model that answers in another format)')
    parser.add_argument('--mask-tolerance', type=float, default=DEFAULT_MASK_TOLERANCE,
                        help='pixels by which masks are grown (endpoints, blockers) or shrunk '
                             '(waypoints to avoid); default %(default)s')
    parser.add_argument('--name', default=None,
                        help='model name in the report (default: the predictions file stem)')


def run(args):
    """Run ``bopask-gen eval``; print the table; exit 2 on unusable input."""
    import sys
    try:
        report, scores = evaluate(args.data, args.pred, args.bop, args.coords,
                                  args.mask_tolerance)
    except (EvalInputError, BopFormatError) as exc:
        print(f'bopask-gen eval: {exc}', file=sys.stderr)
        return 2
    name = args.name or Path(args.pred).stem
    print(report_markdown(report, name))
    if args.report is not None:
        write_report(report, scores, args.report, name)
        print(f'report written to {args.report}')
    return 0
