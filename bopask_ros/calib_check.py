"""``bopask calib-check``: measure the error of the camera-to-robot extrinsic.

A wrong extrinsic (``T_base_camera``: camera optical frame -> robot base frame) is the most
common reason why a correct 2D keypoint becomes a grasp a few centimetres off. This command
compares the configured extrinsic against points whose base-frame position is known:

- ``--frames FILE`` (YAML or JSON): recorded observations of known points, e.g. a marker on
  the table whose position was read by touching it with the TCP::

      camera_info: {k: [fx, 0, cx, 0, fy, cy, 0, 0, 1], width: 640, height: 480}
      # or K: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
      observations:
        - pixel: [u, v]                 # the marker in the colour image
          depth_m: 0.734                # measured depth, metres ...
          point_base: [x, y, z]         # ... the marker in the base frame, metres
        - pixel: [u, v]
          depth_image: frame_001.png    # ... or the aligned depth image (16UC1 PNG in mm,
          depth_scale: 0.001            #     .npy in metres or mm); path relative to FILE
          point_base: [x, y, z]

- ``--sim``: the MuJoCo world with the camera at the configured extrinsic. The known points
  are object top-surface points taken from the simulator's meshes and poses (independent of
  the camera); the simulated detector projects them to pixels, depth comes from the rendered
  depth image, exactly as a recorded frame would give it.

Every measured point is back-projected with K and the aligned depth
(``bopask_gen.core.camera``, robust window median), mapped to the base frame with the
configured extrinsic and compared with the known point (the *residual*: what a grasp would
be off by). With 3 or more non-collinear points the extrinsic that best explains the
measurements is fitted (least squares, scipy's Kabsch) and its difference from the configured
one is the *extrinsic error* (camera position, metres; rotation, degrees). ``--perturb-xyz``
and ``--perturb-rpy-deg`` deliberately corrupt the configured extrinsic to see what a given
error looks like. The exit code is 1 when an error exceeds its threshold, 2 on bad input.
The last output line is one JSON object with all figures.
"""

from dataclasses import dataclass
import json
from pathlib import Path
import sys

import numpy as np
from scipy.spatial.transform import Rotation
import yaml

from bopask_gen.core.camera import backproject_pixels, pixels_inside, project_points, sample_depth
from bopask_gen.core.transforms import (
    invert_transform,
    make_transform,
    matrix_from_quat_xyzw,
    rotation_angle_between,
    transform_points,
    xyz_quat_xyzw_from_transform,
)
from bopask_ros import ros_common

DEFAULT_EXTRINSICS = 'extrinsics.yaml'
EXTRINSIC_NODE = 'backprojection_node'
TRANSLATION_KEY = 'extrinsic.translation'
ROTATION_KEY = 'extrinsic.rotation_xyzw'
MIN_FIT_POINTS = 3
# Second singular value of the centred points below this: (nearly) collinear, no fit.
MIN_SPREAD_M = 0.01
# A sim point counts as seen when the rendered depth agrees with its true depth this well.
SIM_VISIBILITY_TOL_M = 0.005


class CalibCheckError(ValueError):
    """Bad calibration input; the message names the file, key and reason."""


@dataclass
class Extrinsic:
    """The configured camera extrinsic and the frames it connects."""

    T_base_camera: np.ndarray
    base_frame: str = 'panda_link0'
    camera_frame: str = 'camera_color_optical_frame'
    source: str = ''


# ----------------------------------------------------------------------------- extrinsics
def _vector(value, n, where):
    try:
        arr = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise CalibCheckError(f'{where}: expected {n} numbers, got {value!r}') from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise CalibCheckError(f'{where}: expected {n} finite numbers, got {value!r}')
    return arr


def extrinsic_from_parameters(params, where):
    """Build an Extrinsic from flat ROS parameters (``extrinsic.translation`` etc.)."""
    missing = [k for k in (TRANSLATION_KEY, ROTATION_KEY) if k not in params]
    if missing:
        raise CalibCheckError(f'{where}: missing parameter(s) {", ".join(missing)}')
    t = _vector(params[TRANSLATION_KEY], 3, f'{where} [{TRANSLATION_KEY}]')
    q = _vector(params[ROTATION_KEY], 4, f'{where} [{ROTATION_KEY}]')
    norm = np.linalg.norm(q)
    if abs(norm - 1.0) > 1e-3:
        # A non-unit quaternion usually means a typo or a (w, x, y, z) / Euler mix-up.
        raise CalibCheckError(f'{where} [{ROTATION_KEY}]: quaternion (x, y, z, w) must have '
                              f'unit norm, got norm {norm:.4f}')
    return Extrinsic(make_transform(matrix_from_quat_xyzw(q / norm), t),
                     str(params.get('base_frame', Extrinsic.base_frame)),
                     str(params.get('camera_frame', Extrinsic.camera_frame)), where)


def load_extrinsic(path):
    """Read the extrinsic from a ROS 2 parameter file such as ``config/extrinsics.yaml``.

    The parameters ``extrinsic.translation`` ([x, y, z], metres) and
    ``extrinsic.rotation_xyzw`` ([x, y, z, w]) of the ``backprojection_node`` section (or of
    the ``/**`` section, or of the first other node section that has them) give
    ``T_base_camera``.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CalibCheckError(f'{path}: cannot read the extrinsics file ({exc})') from exc
    except yaml.YAMLError as exc:
        raise CalibCheckError(f'{path}: not valid YAML ({exc})') from exc
    if not isinstance(data, dict):
        raise CalibCheckError(f'{path}: top level must be a mapping of node names')
    candidates = [EXTRINSIC_NODE] + [k for k in data if k not in (EXTRINSIC_NODE, '/**')]
    for node in candidates:
        try:
            params = ros_common.load_node_parameters(path, node)
        except ValueError as exc:
            raise CalibCheckError(str(exc)) from exc
        if TRANSLATION_KEY in params or ROTATION_KEY in params:
            section = node if node in data or '/**' not in data else '/**'
            return extrinsic_from_parameters(params, f'{path} [{section}]')
    raise CalibCheckError(f'{path}: no node section has ros__parameters {TRANSLATION_KEY} and '
                          f'{ROTATION_KEY}')


def perturb(T, xyz=(0.0, 0.0, 0.0), rpy_deg=(0.0, 0.0, 0.0)):
    """Return ``T`` moved by ``xyz`` (base frame) and turned by ``rpy_deg`` about its origin.

    The rotation is extrinsic roll, pitch, yaw (about base x, y, z), so the camera position
    changes only by ``xyz`` and the rotation only by the given angles.
    """
    R_d = Rotation.from_euler('xyz', _vector(rpy_deg, 3, 'rpy'), degrees=True).as_matrix()
    T = np.asarray(T, dtype=float)
    return make_transform(R_d @ T[:3, :3], T[:3, 3] + _vector(xyz, 3, 'xyz'))


# ----------------------------------------------------------------------------- geometry
def fit_extrinsic(points_camera, points_base):
    """Least-squares ``T_base_camera`` mapping camera-frame points onto base-frame points.

    Returns None when fewer than 3 points or when they are (nearly) collinear, because the
    rotation about their line is then undetermined.
    """
    pc = np.asarray(points_camera, dtype=float).reshape(-1, 3)
    pb = np.asarray(points_base, dtype=float).reshape(-1, 3)
    if len(pc) < MIN_FIT_POINTS:
        return None
    mc, mb = pc.mean(axis=0), pb.mean(axis=0)
    if np.linalg.svd(pc - mc, compute_uv=False)[1] < MIN_SPREAD_M:
        return None
    rotation, _ = Rotation.align_vectors(pb - mb, pc - mc)
    R = rotation.as_matrix()
    return make_transform(R, mb - R @ mc)


def evaluate(T_configured, points_camera, points_base):
    """Return the residuals and (when it can be fitted) the extrinsic error, as a dict."""
    pc = np.asarray(points_camera, dtype=float).reshape(-1, 3)
    pb = np.asarray(points_base, dtype=float).reshape(-1, 3)
    residuals = np.linalg.norm(transform_points(T_configured, pc) - pb, axis=1)
    report = {
        'points': int(len(pc)),
        'residual_mean_m': float(residuals.mean()),
        'residual_max_m': float(residuals.max()),
        'translation_error_m': None,
        'rotation_error_deg': None,
        'fit_rms_m': None,
        'estimated_extrinsic': None,
    }
    T_fit = fit_extrinsic(pc, pb)
    if T_fit is not None:
        fit_res = np.linalg.norm(transform_points(T_fit, pc) - pb, axis=1)
        t, q = xyz_quat_xyzw_from_transform(T_fit)
        report.update(
            translation_error_m=float(np.linalg.norm(T_fit[:3, 3] - T_configured[:3, 3])),
            rotation_error_deg=float(np.rad2deg(rotation_angle_between(T_fit, T_configured))),
            fit_rms_m=float(np.sqrt(np.mean(fit_res ** 2))),
            estimated_extrinsic={'translation': t.tolist(), 'rotation_xyzw': q.tolist()},
        )
    return report


# ----------------------------------------------------------------------------- recorded frames
def _intrinsics(data, where):
    if 'K' in data:
        K = np.asarray(data['K'], dtype=float)
        if K.shape != (3, 3):
            raise CalibCheckError(f'{where} [K]: expected a 3x3 matrix, got shape {K.shape}')
    elif 'camera_info' in data and isinstance(data['camera_info'], dict):
        info = data['camera_info']
        key = 'k' if 'k' in info else 'K'
        if key not in info:
            raise CalibCheckError(f'{where} [camera_info]: needs k (9 numbers, row-major)')
        K = _vector(info[key], 9, f'{where} [camera_info.{key}]').reshape(3, 3)
    else:
        raise CalibCheckError(f'{where}: needs K (3x3) or camera_info.k (9 numbers)')
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibCheckError(f'{where}: K must be finite with positive focal lengths')
    return K


def _read_depth_image(path, scale, where):
    if not path.is_file():
        raise CalibCheckError(f'{where}: depth image {path} not found')
    if path.suffix == '.npy':
        depth = np.load(path)
    else:
        import cv2
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise CalibCheckError(f'{where}: {path} is not a readable image')
    if depth.ndim != 2:
        raise CalibCheckError(f'{where}: {path} must be a single-channel depth image, '
                              f'got shape {depth.shape}')
    if scale is None:
        # Integer images are millimetres (realsense-ros 16UC1); float ones are metres.
        scale = 0.001 if np.issubdtype(depth.dtype, np.integer) else 1.0
    return depth.astype(float) * float(scale)


def load_observations(path, window=5):
    """Read a frames file; return (points_camera (N, 3), points_base (N, 3), K).

    Every observation is checked: pixel inside the image (when the size is known), a valid
    depth (no holes: the window median of the depth image), finite known point.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CalibCheckError(f'{path}: cannot read the frames file ({exc})') from exc
    try:
        data = json.loads(text) if path.suffix == '.json' else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CalibCheckError(f'{path}: not valid {path.suffix[1:] or "YAML"} ({exc})') from exc
    if not isinstance(data, dict):
        raise CalibCheckError(f'{path}: top level must be a mapping with K and observations')
    K = _intrinsics(data, str(path))
    info = data.get('camera_info') or {}
    size = (info.get('width'), info.get('height'))
    observations = data.get('observations')
    if not isinstance(observations, list) or not observations:
        raise CalibCheckError(f'{path} [observations]: needs a non-empty list')
    uv, depth, base = [], [], []
    for i, obs in enumerate(observations):
        where = f'{path} [observations[{i}]]'
        if not isinstance(obs, dict):
            raise CalibCheckError(f'{where}: must be a mapping')
        for key in ('pixel', 'point_base'):
            if key not in obs:
                raise CalibCheckError(f'{where}: missing {key}')
        pixel = _vector(obs['pixel'], 2, f'{where} [pixel]')
        if 'depth_m' in obs:
            if all(size):
                _check_inside(pixel, size, where)
            d = float(_vector(obs['depth_m'], 1, f'{where} [depth_m]')[0])
        elif 'depth_image' in obs:
            image = _read_depth_image(path.parent / str(obs['depth_image']),
                                      obs.get('depth_scale'), where)
            _check_inside(pixel, (image.shape[1], image.shape[0]), where)
            d = float(sample_depth(image, pixel[None], window=window)[0])
        else:
            raise CalibCheckError(f'{where}: needs depth_m or depth_image')
        if not np.isfinite(d) or d <= 0:
            raise CalibCheckError(f'{where}: no valid depth at pixel ({pixel[0]:.1f}, '
                                  f'{pixel[1]:.1f}) (hole in the depth image?)')
        uv.append(pixel)
        depth.append(d)
        base.append(_vector(obs['point_base'], 3, f'{where} [point_base]'))
    points_camera = backproject_pixels(np.array(uv), np.array(depth), K)
    return points_camera, np.array(base), K


def _check_inside(pixel, size, where):
    if not pixels_inside(pixel[None], size[0], size[1])[0]:
        raise CalibCheckError(f'{where}: pixel ({pixel[0]:.1f}, {pixel[1]:.1f}) is outside '
                              f'the {size[0]}x{size[1]} image')


# ----------------------------------------------------------------------------- simulation
def top_surface_points(mesh_world, spread=0.3):
    """Known points on the top of a world-frame object mesh (vertical rays from above).

    Rays start above the object's bounding-box centre and at +-``spread`` of its half
    extents in x and y; each hit is the topmost surface point on that vertical line.
    """
    lo, hi = mesh_world.bounds
    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    offsets = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]]) * spread * half[:2]
    origins = np.column_stack([centre[:2] + offsets, np.full(len(offsets), hi[2] + 0.05)])
    directions = np.tile([0.0, 0.0, -1.0], (len(offsets), 1))
    hits, ray_index, _ = mesh_world.ray.intersects_location(origins, directions,
                                                            multiple_hits=False)
    return hits[np.argsort(ray_index)]


@dataclass
class SimFrame:
    """One simulated recording: the aligned depth image and where the known points appear."""

    depth_m: np.ndarray     # HxW metres, 0 = no measurement
    K: np.ndarray
    uv: np.ndarray          # (N, 2) pixels of the visible known points
    points_base: np.ndarray  # (N, 3) the same points in the base frame (ground truth)


def sim_frames(T_base_camera, frames=3, seed=0, window=3):
    """Record ``frames`` simulated views of known object points, camera at ``T_base_camera``.

    Each frame is a fresh world (objects dropped with ``seed + i``) seen from the same
    camera pose, as a fixed camera on a real robot sees a changing table. Points hidden
    behind another object or outside the image are left out.
    """
    from bopask_gen.sim.world import World

    out = []
    for i in range(int(frames)):
        with World(seed=int(seed) + i) as world:
            T_world_camera = world.T_world_base @ np.asarray(T_base_camera, dtype=float)
            world.set_camera_pose(T_world_camera)
            depth = world.render_depth()
            T_camera_world = invert_transform(T_world_camera)
            T_base_world = invert_transform(world.T_world_base)
            uvs, bases = [np.zeros((0, 2))], [np.zeros((0, 3))]
            for obj in world.objects:
                mesh = obj.mesh.copy().apply_transform(world.object_pose(obj.index))
                known_world = top_surface_points(mesh)
                known_cam = transform_points(T_camera_world, known_world)
                # The simulated detector: where the known point appears in the image.
                uv = project_points(known_cam, world.K)
                seen = pixels_inside(uv, world.width, world.height)
                d = np.full(len(uv), np.nan)
                d[seen] = sample_depth(depth, uv[seen], window=window)
                with np.errstate(invalid='ignore'):
                    seen &= np.abs(d - known_cam[:, 2]) < SIM_VISIBILITY_TOL_M  # not occluded
                uvs.append(uv[seen])
                bases.append(transform_points(T_base_world, known_world[seen]))
            out.append(SimFrame(depth, world.K.copy(), np.concatenate(uvs),
                                np.concatenate(bases)))
    return out


def observations_from_frames(frames, window=5):
    """Measure (points_camera, points_base) from SimFrames exactly as from recorded ones."""
    cam, base = [np.zeros((0, 3))], [np.zeros((0, 3))]
    for frame in frames:
        d = sample_depth(frame.depth_m, frame.uv, window=window)
        ok = np.isfinite(d)
        cam.append(backproject_pixels(frame.uv[ok], d[ok], frame.K))
        base.append(frame.points_base[ok])
    return np.concatenate(cam), np.concatenate(base)


def save_frames(frames, out_dir):
    """Write SimFrames as a ``--frames`` file (frames.yaml + 16UC1 depth PNGs in mm).

    Gives a working example of the recorded-frames format; returns the YAML path.
    """
    import cv2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    K = frames[0].K
    h, w = frames[0].depth_m.shape
    observations = []
    for i, frame in enumerate(frames):
        name = f'depth_{i:03d}.png'
        # realsense-ros aligned depth: uint16 millimetres, 0 = no measurement.
        mm = np.round(np.clip(frame.depth_m, 0.0, 65.535) * 1000.0).astype(np.uint16)
        if not cv2.imwrite(str(out_dir / name), mm):
            raise CalibCheckError(f'{out_dir / name}: could not write the depth image')
        for uv, pb in zip(frame.uv, frame.points_base):
            observations.append({'pixel': [round(float(c), 3) for c in uv],
                                 'depth_image': name,
                                 'point_base': [round(float(c), 6) for c in pb]})
    data = {'camera_info': {'width': int(w), 'height': int(h),
                            'k': [float(v) for v in K.reshape(-1)]},
            'observations': observations}
    path = out_dir / 'frames.yaml'
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- command
def add_arguments(parser):
    """Arguments of ``bopask calib-check``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--frames', type=Path, metavar='FILE',
                        help='YAML/JSON file of recorded observations of known points '
                             '(format: see `pydoc bopask_ros.calib_check`)')
    source.add_argument('--sim', action='store_true',
                        help='observe object points in the MuJoCo world, camera at the '
                             'configured extrinsic')
    parser.add_argument('--extrinsics', default=DEFAULT_EXTRINSICS, metavar='YAML',
                        help='ROS 2 parameter file with extrinsic.translation and '
                             'extrinsic.rotation_xyzw (default: config/%(default)s)')
    parser.add_argument('--perturb-xyz', type=float, nargs=3, default=(0.0, 0.0, 0.0),
                        metavar=('DX', 'DY', 'DZ'),
                        help='add this offset (metres, base frame) to the checked extrinsic')
    parser.add_argument('--perturb-rpy-deg', type=float, nargs=3, default=(0.0, 0.0, 0.0),
                        metavar=('R', 'P', 'Y'),
                        help='turn the checked extrinsic by these angles (degrees, about base '
                             'x, y, z through the camera origin)')
    parser.add_argument('--sim-frames', type=int, default=3,
                        help='--sim: worlds (object drops) to observe (default %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='--sim: first world seed')
    parser.add_argument('--save-frames', type=Path, metavar='DIR',
                        help='--sim: also write the observations as a --frames file '
                             '(DIR/frames.yaml + depth PNGs), an example of the format')
    parser.add_argument('--depth-window', type=int, default=5,
                        help='depth median window, pixels (default %(default)s)')
    parser.add_argument('--max-translation-error', type=float, default=0.01, metavar='M',
                        help='fail above this camera position error / mean residual '
                             '(default %(default)s m)')
    parser.add_argument('--max-rotation-error-deg', type=float, default=1.0, metavar='DEG',
                        help='fail above this rotation error (default %(default)s deg)')


def _format_report(report, extrinsic):
    lines = [f'extrinsic {extrinsic.source}: {extrinsic.base_frame} <- '
             f'{extrinsic.camera_frame}',
             f'{report["points"]} known points; residual with the configured extrinsic: '
             f'mean {1000 * report["residual_mean_m"]:.1f} mm, '
             f'max {1000 * report["residual_max_m"]:.1f} mm']
    if report['translation_error_m'] is None:
        lines.append(f'extrinsic not fitted: needs >= {MIN_FIT_POINTS} non-collinear points '
                     '(only the residual is reported)')
    else:
        est = report['estimated_extrinsic']
        lines += [
            f'extrinsic error: camera position {1000 * report["translation_error_m"]:.1f} mm, '
            f'rotation {report["rotation_error_deg"]:.2f} deg '
            f'(fit rms {1000 * report["fit_rms_m"]:.1f} mm)',
            'best-fit extrinsic (for config/extrinsics.yaml, once the error is confirmed):',
            '    extrinsic:',
            f'      translation: {np.round(est["translation"], 5).tolist()}',
            f'      rotation_xyzw: {np.round(est["rotation_xyzw"], 6).tolist()}',
        ]
    return lines


def run(args):
    """Run the check; 0 within thresholds, 1 above, 2 on bad input."""
    try:
        if args.sim_frames < 1 or args.depth_window < 1:
            raise CalibCheckError('--sim-frames and --depth-window must be at least 1')
        if args.save_frames is not None and not args.sim:
            raise CalibCheckError('--save-frames writes simulated recordings: use it with --sim')
        try:
            extrinsic = load_extrinsic(ros_common.config_path(args.extrinsics))
        except FileNotFoundError as exc:
            raise CalibCheckError(str(exc)) from exc
        T_checked = perturb(extrinsic.T_base_camera, args.perturb_xyz, args.perturb_rpy_deg)
        if args.sim:
            frames = sim_frames(extrinsic.T_base_camera, frames=args.sim_frames,
                                seed=args.seed)
            pc, pb = observations_from_frames(frames, window=args.depth_window)
            if len(pc) == 0:
                raise CalibCheckError(f'{extrinsic.source}: no object is visible from this '
                                      'camera pose in the simulated world')
            if args.save_frames is not None:
                print(f'wrote {save_frames(frames, args.save_frames)}')
        else:
            pc, pb, _ = load_observations(args.frames, window=args.depth_window)
    except CalibCheckError as exc:
        print(f'bopask calib-check: {exc}', file=sys.stderr)
        return 2
    report = evaluate(T_checked, pc, pb)
    report['perturbation'] = {'xyz': list(args.perturb_xyz),
                              'rpy_deg': list(args.perturb_rpy_deg)}
    for line in _format_report(report, extrinsic):
        print(line)
    position_error = report['translation_error_m']
    if position_error is None:
        position_error = report['residual_mean_m']
    ok = position_error <= args.max_translation_error and (
        report['rotation_error_deg'] is None
        or report['rotation_error_deg'] <= args.max_rotation_error_deg)
    report['ok'] = bool(ok)
    print('OK: within thresholds' if ok else 'FAIL: extrinsic error above threshold '
          f'({args.max_translation_error} m, {args.max_rotation_error_deg} deg)')
    print(json.dumps(report))
    return 0 if ok else 1
