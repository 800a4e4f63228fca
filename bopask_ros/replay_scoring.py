"""Scores of a replayed bag: what the vlm + backprojection nodes produced vs the ground truth.

Pure functions over numpy arrays and status lines (no ROS). Per answered command:

- ``grasp_centre_error_m``: distance between the back-projected TCP and the reference TCP;
- ``finger_axis_error_deg``: angle between the finger axes (gripper y, core.gripper), taken
  modulo 180 degrees (the hand is symmetric: swapping the fingers is the same grasp);
- ``path_error_m``: symmetric mean distance between the waypoint polylines (each point of one
  to the nearest segment of the other, averaged both ways).

Two references (``bag_replay`` computes them from the recorded ground truth):

- *reference keypoints*: the generator's ground-truth answer for the recorded frame (the
  oracle's annotators on the recorded scene) lifted to 3D by the same back-projection with
  the recorded depth. The errors are what the model's keypoints cost in metres/degrees, and
  a perfect model scores zero.
- *3D ground truth* (``*_gt``): the generator's grasp itself (TCP and finger axis in the
  robot base frame); these include the back-projection's own approximations (top-down
  approach, TCP under the visible top), so even perfect keypoints score above zero.

Status lines (``/bopask/status``) give the refusals; a vlm refusal for an "unusable" answer
is a parse failure (unparseable text, wrong point count, keypoints outside the image).
"""

import re

import numpy as np

_COMMAND_ID = re.compile(r'\bcommand (\d+)\b')


def grasp_centre_error(T_pred, T_ref):
    """Distance (m) between the translations of two 4x4 grasp poses."""
    return float(np.linalg.norm(np.asarray(T_pred)[:3, 3] - np.asarray(T_ref)[:3, 3]))


def finger_axis_angle_deg(T_pred, T_ref):
    """Angle (deg, 0..90) between the finger axes (y columns) of two grasp poses."""
    a = np.asarray(T_pred, dtype=float)[:3, 1]
    b = np.asarray(T_ref, dtype=float)[:3, 1]
    c = abs(float(a @ b)) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    return float(np.degrees(np.arccos(np.clip(c, 0.0, 1.0))))


def point_to_polyline(points, polyline):
    """(N,) distance from each point to the nearest segment (or point) of a polyline."""
    p = np.asarray(points, dtype=float).reshape(-1, 3)
    q = np.asarray(polyline, dtype=float).reshape(-1, 3)
    if len(q) == 0:
        raise ValueError('empty polyline')
    if len(q) == 1:
        return np.linalg.norm(p - q[0], axis=1)
    a, b = q[:-1], q[1:]
    ab = b - a
    t = np.einsum('nsk,sk->ns', p[:, None, :] - a[None], ab) / np.maximum(
        np.einsum('sk,sk->s', ab, ab), 1e-18)
    closest = a[None] + np.clip(t, 0.0, 1.0)[..., None] * ab[None]
    return np.linalg.norm(p[:, None, :] - closest, axis=2).min(axis=1)


def path_error(pred, ref):
    """Symmetric mean point-to-polyline distance (m) between two waypoint paths."""
    pred = np.asarray(pred, dtype=float).reshape(-1, 3)
    ref = np.asarray(ref, dtype=float).reshape(-1, 3)
    if len(pred) == 0 or len(ref) == 0:
        raise ValueError('a path error needs two non-empty paths')
    return float(0.5 * (point_to_polyline(pred, ref).mean() + point_to_polyline(ref, pred).mean()))


def command_ids(lines, source='vlm'):
    """Command ids named in status lines of one source (``[vlm] ...``), in order, unique."""
    out = []
    for line in lines:
        if line.startswith(f'[{source}]'):
            m = _COMMAND_ID.search(line)
            if m and int(m.group(1)) not in out:
                out.append(int(m.group(1)))
    return out


def refusal_of(lines, command_id):
    """The first refusal line of ``command_id`` from the vlm or backprojection (or None)."""
    for line in lines:
        if not (line.startswith('[vlm]') or line.startswith('[backprojection]')):
            continue
        m = re.search(r'\brefused command (\d+)\b', line)
        if m and int(m.group(1)) == command_id:
            return line
    return None


def is_parse_failure(refusal_line):
    """True for a vlm refusal of an unusable model answer (parse or keypoint check)."""
    return bool(refusal_line) and refusal_line.startswith('[vlm]') and 'unusable' in refusal_line


def score_command(pred_request, ref_target, gt_T_base_tcp=None):
    """Errors of one answered command.

    ``pred_request``: the backprojection's grasp request dict (``grasp.T``, ``waypoints``);
    ``ref_target``: the reference ``backprojection.GraspTarget``; ``gt_T_base_tcp``: the
    generator's grasp in the base frame (optional).
    """
    T_pred = np.asarray(pred_request['grasp']['T'], dtype=float)
    row = {
        'grasp_centre_error_m': grasp_centre_error(T_pred, ref_target.T_base_tcp),
        'finger_axis_error_deg': finger_axis_angle_deg(T_pred, ref_target.T_base_tcp),
        'path_error_m': path_error(pred_request['waypoints'], ref_target.waypoints),
    }
    if gt_T_base_tcp is not None:
        row['grasp_centre_error_gt_m'] = grasp_centre_error(T_pred, gt_T_base_tcp)
        row['finger_axis_error_gt_deg'] = finger_axis_angle_deg(T_pred, gt_T_base_tcp)
    return row


METRICS = ('grasp_centre_error_m', 'finger_axis_error_deg', 'path_error_m',
           'grasp_centre_error_gt_m', 'finger_axis_error_gt_deg')


def summarize(rows):
    """Counts and per-metric median/mean/max over the command rows."""
    summary = {
        'commands': len(rows),
        'scored': sum(r['outcome'] == 'scored' for r in rows),
        'refusals': sum(r['outcome'] == 'refused' for r in rows),
        'parse_failures': sum(bool(r.get('parse_failure')) for r in rows),
        'no_answer': sum(r['outcome'] == 'no answer' for r in rows),
        'no_reference': sum(r['outcome'] == 'no reference' for r in rows),
    }
    for metric in METRICS:
        values = np.array([r[metric] for r in rows if r.get(metric) is not None], dtype=float)
        if len(values):
            summary[metric] = {'median': float(np.median(values)),
                               'mean': float(values.mean()), 'max': float(values.max())}
    return summary


def _fmt(value, unit):
    if value is None:
        return '-'
    return f'{value * 1000:.1f} mm' if unit == 'm' else f'{value:.1f} deg'


def render_markdown(report):
    """The markdown report of ``bag_replay`` (a dict with 'bag', 'backend', 'rows', 'summary')."""
    s = report['summary']
    lines = [f'# bopask replay: {report["bag"]}', '',
             f'- backend: {report.get("backend", "?")}; rate {report.get("rate", 1.0):g}; '
             f'{report.get("messages_published", 0)} messages published, '
             f'{len(report.get("skipped_topics", []))} topics skipped '
             f'{report.get("skipped_topics", [])}, '
             f'{len(report.get("corrupt_messages", []))} corrupt messages skipped',
             f'- commands {s["commands"]}: scored {s["scored"]}, refused {s["refusals"]} '
             f'(parse failures {s["parse_failures"]}), no answer {s["no_answer"]}, '
             f'no reference {s["no_reference"]}']
    timing = report.get('timing') or {}
    if timing:
        lines.append(f'- playback lateness vs the recorded timing: median '
                     f'{timing["median_lateness_ms"]:.1f} ms, '
                     f'max {timing["max_lateness_ms"]:.1f} ms')
    for err in report.get('errors', []):
        lines.append(f'- ERROR: {err}')
    lines += ['', '| metric | median | mean | max |', '|---|---|---|---|']
    for metric in METRICS:
        if metric in s:
            unit = 'deg' if metric.endswith('deg') else 'm'
            m = s[metric]
            lines.append(f'| {metric} | {_fmt(m["median"], unit)} | {_fmt(m["mean"], unit)} | '
                         f'{_fmt(m["max"], unit)} |')
    lines += ['', '| # | command | outcome | grasp centre | finger axis | path | '
              'grasp centre (3D GT) | finger axis (3D GT) | note |',
              '|---|---|---|---|---|---|---|---|---|']
    for r in report['rows']:
        note = (r.get('refusal') or r.get('note') or '').replace('|', '/')[:120]
        lines.append(
            f'| {r["index"]} | {r["command"]} | {r["outcome"]} | '
            f'{_fmt(r.get("grasp_centre_error_m"), "m")} | '
            f'{_fmt(r.get("finger_axis_error_deg"), "deg")} | '
            f'{_fmt(r.get("path_error_m"), "m")} | '
            f'{_fmt(r.get("grasp_centre_error_gt_m"), "m")} | '
            f'{_fmt(r.get("finger_axis_error_gt_deg"), "deg")} | {note} |')
    return '\n'.join(lines) + '\n'
