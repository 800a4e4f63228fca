"""Lift the VLM's 2D keypoints to 3D robot-frame targets (the core of the backprojection node).

Inputs: grasp keypoints (5 pixels, core.gripper order: centre, left base, right base, left
tip, right tip), trajectory waypoints (M pixels), the aligned depth image in metres, K and
the camera extrinsic ``T_base_camera`` (optical frame -> robot base frame).

Geometry, and why:

- Depth is read with a robust window median (``core.camera.sample_depth``); a keypoint whose
  window has no valid pixel is refused, never guessed.
- The grasp centre pixel sees the object's visible surface, while the TCP lies inside the
  object further along that ray, at a depth the 2D keypoints do not pin down. For a
  top-down grasp the hand straddles the object's top: among the depth points within
  ``top_radius`` (horizontally) of the surface point, those within ``top_band`` of the
  highest one form the top face; the TCP is where the centre pixel's ray crosses
  ``grasp_depth`` below it (and at least ``min_tcp_height`` above the table) -- the centre
  keypoint is the TCP's projection.
- The finger line (left tip minus right tip, each where its pixel's ray crosses the TCP's
  height: the tips are level with the TCP, and their depth pixels may see the background)
  gives the yaw and the opening.
- The approach: the generator's grasps turn about the closing line away from straight down
  (up to 90 degrees); the finger-base pixels, ``FINGER_LENGTH`` behind the tips, tell the
  angle (``fit_tilt``, up to ``max_tilt_deg``, the least tilted angle that explains them).
  A tilted grasp holds the object by its sides, so its TCP is on the centre pixel's ray,
  inside the object: level with the fingertip nearer the camera when the closing line runs
  along the view (that finger's pad is on the surface the camera sees there:
  ``near_tip_height``), else where the ray crosses the top face's mid-plane across the
  fingers (``tilted_tcp``; a tall object's side has no top face near the grasp).
- Waypoints are lifted to the surface they point at, and their viewing rays are kept: the
  generator's waypoints hang in the air (positions of the carried object), so the executor
  intersects the rays with its carrying height instead of trusting the surface behind them
  (which may be the robot's own arm).
- Placing and carrying need the scene's free space, which the 2D waypoints do not give:
  a subsampled cloud of the depth image (robot base excluded) is rasterised into a top-view
  occupancy grid whose 8-connected groups are the objects' footprints. The held object's
  footprint is slid away from the target's top centre along 16 directions (nearest the
  object's start side first) until it keeps ``place_gap`` from every other footprint; the
  first spot within ``place_max_gap`` of the target's footprint is the place point (none ->
  refused). So a wide target (a bowl) or a wide held object gets the room it needs.
  ``scene_top_z`` (the highest object point) tells the executor how high to carry.
- The generator's last waypoint hangs in the air *above* the target object, so its pixel often
  sees the table behind the target. The target point is therefore the first object surface
  (higher than ``min_object_height`` above the table) found scanning from the last waypoint
  along the image of the world vertical through it -- "the thing under the goal" -- or the
  goal's own surface point if none.

Speed: the node lifts one keypoint set per command, seconds apart, while the simulator and
the renderer share the machine's cores; each request then starts with cold caches, and its
time goes by the number of distinct numpy calls more than by array sizes (0.35 ms warm,
about 0.9 ms so in the node). So the lift uses ufunc methods (``np.add.reduce``,
``np.logical_and.reduce``) where ``np.sum``, ``np.mean``, ``.any()``, ``np.stack`` or
``np.linalg.norm`` would run Python-level glue first, and keeps one dtype (float64)
throughout. ``bench/bench_pick_place.py`` measures it in the node.
"""

import dataclasses
from dataclasses import dataclass, field
import functools
import math

import numpy as np

from bopask_gen.core import gripper
from bopask_gen.core.camera import (
    backproject_grid,
    backproject_pixels,
    pixel_rays,
    pixels_inside,
    project_points,
    sample_depth,
)
from bopask_gen.core.transforms import (
    invert_transform,
    make_transform,
    rotate_vectors,
    transform_points,
)


class BackprojectionError(ValueError):
    """A keypoint set that cannot be lifted to 3D; the message says which point and why."""


@dataclass
class BackprojectionParams:
    """Tunable geometry of the lift (defaults from config/pick_place.yaml)."""

    depth_window: int = 5
    grasp_depth: float = 0.03
    table_z: float = 0.0
    min_tcp_height: float = 0.015
    min_finger_line_px: float = 2.0
    max_tilt_deg: float = 60.0
    tilt_tolerance_px: float = 1.5
    top_down_deg: float = 10.0
    min_object_height: float = 0.015
    max_object_height: float = 0.40
    place_gap: float = 0.02
    place_max_gap: float = 0.05
    place_max_distance: float = 0.35
    place_cell: float = 0.015
    place_clear_radius: float = 0.05
    place_target_radius: float = 0.12
    place_max_reach: float = 0.70
    place_min_reach: float = 0.32
    # The hand at a place spot (with the grasp's orientation) must be within the arm's reach
    # (``bopask_gen.sim.ik.ArmReach`` of the Panda) put down, lifted and backed out as the
    # executor moves it (its lift_height and retreat_offset).
    place_lift_height: float = 0.15
    place_retreat_offset: float = 0.12
    arm_shoulder: tuple = (0.0, 0.0, 0.333)
    arm_wrist_reach: float = 0.719
    arm_flange: float = 0.2104
    arm_wrist_offset: float = 0.088
    robot_exclusion_radius: float = 0.25
    cloud_stride: int = 4
    top_radius: float = 0.04
    top_band: float = 0.004
    top_max_rise: float = 0.06
    max_top_slope_deg: float = 30.0
    pad_inset: float = 0.015
    depth_jump: float = 0.012
    target_scan_px: int = 200


@dataclass
class GraspTarget:
    """A grasp in the robot base frame plus the surface points of the waypoints."""

    T_base_tcp: np.ndarray
    width: float
    surface_point: np.ndarray
    waypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    target_point: np.ndarray = None
    waypoint_rays: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    place_point: np.ndarray = None
    scene_top_z: float = None
    keypoints_depth: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def position(self):
        """TCP position (3,)."""
        return self.T_base_tcp[:3, 3].copy()

    @property
    def approach(self):
        """Unit approach direction (3,), the gripper z axis."""
        return self.T_base_tcp[:3, 2].copy()

    @property
    def tilt_deg(self):
        """Angle between the approach and straight down, degrees."""
        return gripper.approach_tilt_deg(self.T_base_tcp)

    @property
    def yaw(self):
        """Angle of the finger-closing line (gripper y axis) about base z, radians."""
        y = self.T_base_tcp[:3, 1]
        return float(np.arctan2(y[1], y[0]))


def _refuse_outside(uv, name, width, height):
    """Raise BackprojectionError naming (``name(i)``) the first pixel off the image."""
    inside = pixels_inside(uv, width, height)
    if not np.logical_and.reduce(inside):
        i = int(np.argmin(inside))
        raise BackprojectionError(f'{name(i)} at ({uv[i, 0]:.1f}, {uv[i, 1]:.1f}) is outside '
                                  f'the {width}x{height} image')


def sampled_depths(uv, depth_m, window, name):
    """Return the (N,) robust depths of in-image pixels.

    The first pixel with no valid depth is refused, named ``name(i)``.
    """
    depth = sample_depth(depth_m, uv, window=window)
    finite = np.isfinite(depth)
    if not np.logical_and.reduce(finite):
        i = int(np.argmin(finite))
        raise BackprojectionError(
            f'no valid depth in the {window}x{window} window around {name(i)} at '
            f'({uv[i, 0]:.1f}, {uv[i, 1]:.1f})')
    return depth


def lift_pixels(uv, depth_m, K, window, what):
    """Return (N, 3) camera-frame points and (N,) depths; refuse points with no valid depth.

    ``what`` names the points in refusals ('waypoint' -> 'waypoint point 2').
    """
    uv = np.asarray(uv, dtype=float).reshape(-1, 2)

    def name(i):
        return f'{what} point {i}'
    h, w = depth_m.shape
    _refuse_outside(uv, name, w, h)
    depth = sampled_depths(uv, depth_m, window, name)
    return backproject_pixels(uv, depth, K), depth


def pixel_rays_base(uv, K, T_base_camera):
    """Return the (N, 3) base-frame directions of pixels' viewing rays, at unit camera depth.

    The pixel seen at camera depth d is at ``camera origin + d * ray``.
    """
    return rotate_vectors(T_base_camera, pixel_rays(uv, K))


def unit_rows(vectors):
    """The (N, 3) vectors scaled to unit length (a ufunc reduction: no Python wrapper)."""
    return vectors / np.sqrt(np.add.reduce(vectors * vectors, axis=1))[:, None]


def viewing_rays_base(uv, K, T_base_camera):
    """Return the (N, 3) unit viewing rays of pixels in the base frame (from the camera)."""
    return unit_rows(pixel_rays_base(uv, K, T_base_camera))


def surface_component(patch, seed, seed_depth, jump):
    """Bool mask of the depth samples connected to ``seed`` without a depth step > ``jump``.

    ``patch``: depths, NaN where there is none (those are cut). 4-connected; the far sample
    of every step is cut, so an object and what lies behind it come apart while the near
    object keeps its edge. The component is that of the sample nearest ``seed`` (row, col)
    whose depth is within ``jump`` of ``seed_depth``.
    """
    import cv2
    cut = np.isnan(patch)
    # Next minus this sample; NaN next to no depth, which compares False: no step there.
    rows, cols = patch[1:] - patch[:-1], patch[:, 1:] - patch[:, :-1]
    # The next one lies behind a step: cut it; this one lies behind: cut this one.
    cut[1:] |= rows > jump
    cut[:-1] |= rows < -jump
    cut[:, 1:] |= cols > jump
    cut[:, :-1] |= cols < -jump
    # 4-connected labels (as scipy.ndimage.label, a quarter of its time on these patches).
    n, labels = cv2.connectedComponents((~cut).view(np.uint8), connectivity=4,
                                        ltype=cv2.CV_16U)   # less code to run than int32
    if n == 1:
        return np.zeros(patch.shape, dtype=bool)
    r, c = int(round(seed[0])), int(round(seed[1]))
    if (0 <= r < patch.shape[0] and 0 <= c < patch.shape[1] and labels[r, c]
            and abs(patch[r, c] - seed_depth) <= jump):
        return labels == labels[r, c]      # the nearest sample itself: the common case
    # The seed's component: the nearest sample at the seed's depth (the strided grid may
    # put the seed's own sample across the step).
    rows, cols = np.nonzero(labels)
    dist = (rows - seed[0]) ** 2 + (cols - seed[1]) ** 2
    same = np.abs(patch[rows, cols] - seed_depth) <= jump
    if np.any(same):
        dist = np.where(same, dist, np.inf)
    i = int(np.argmin(dist))
    return labels == labels[rows[i], cols[i]]


def cross3(a, b):
    """Cross product (3,) of two 3-vectors, in plain floats.

    ``np.cross`` moves axes around for general shapes: about 50 microseconds a call, a
    tenth of a whole back-projection.
    """
    (a0, a1, a2), (b0, b1, b2) = np.asarray(a, float).tolist(), np.asarray(b, float).tolist()
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def level_samples(points, max_slope_deg):
    """Bool (H, W) mask of the grid points (H, W, 3) whose surface is nearly level.

    Within ``max_slope_deg`` of level, the normal from the differences to the next row and
    column; the last row and column, and NaN samples (no depth) or those next to one, are
    not level.
    """
    out = np.zeros(points.shape[:2], dtype=bool)
    if min(points.shape[:2]) < 2:
        return out
    a = points[1:, :-1] - points[:-1, :-1]
    b = points[:-1, 1:] - points[:-1, :-1]
    ax, ay, az, bx, by, bz = a[..., 0], a[..., 1], a[..., 2], b[..., 0], b[..., 1], b[..., 2]
    # The normal a x b, component by component (no stacked array).
    nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    cos2 = math.cos(math.radians(max_slope_deg)) ** 2
    out[:-1, :-1] = nz * nz >= cos2 * (nx * nx + ny * ny + nz * nz)   # NaN: False
    return out


def top_face(centre_uv, surface, depth, depth_m, K, T_base_camera, params):
    """Return (centroid (3,), points (N, 3)) of the top face near a surface point (base frame).

    The pixel window covers 1.5 ``top_radius`` at the point's depth; of the samples joined to
    the point without a depth step (``surface_component``), the level ones (within
    ``max_top_slope_deg``) are kept; points farther than ``top_radius`` horizontally from
    the current centre, ``top_band`` under the highest one, or ``top_max_rise`` above the
    surface point (a taller neighbour) are dropped.
    """
    h, w = depth_m.shape
    r_px = math.ceil(1.5 * float(K[0, 0]) * params.top_radius / max(depth, 1e-3))
    u, v = (int(round(c)) for c in centre_uv.tolist())
    v0, v1 = max(v - r_px, 0), min(v + r_px + 1, h)
    u0, u1 = max(u - r_px, 0), min(u + r_px + 1, w)
    step = 3  # every third pixel: ~4 mm spacing at 0.8 m is plenty for a centroid
    # float64 from here (the published image is float32): one dtype for all the arithmetic
    # below, as for the rest of the lift -- each dtype's loops are more code to run cold.
    patch = depth_m[v0:v1:step, u0:u1:step].astype(float)
    # No depth (0, NaN, inf) becomes NaN: no step, point or normal is made of it (and NaN
    # arithmetic raises no floating-point warnings to silence).
    patch = np.where((patch > 0) & (patch < np.inf), patch, np.nan)
    keep = surface_component(patch, ((v - v0) / step, (u - u0) / step), depth,
                             params.depth_jump)
    if not np.logical_or.reduce(keep, axis=None):
        return surface, surface[None]
    cam = backproject_grid(patch, np.arange(u0, u1, step), np.arange(v0, v1, step), K)
    grid = transform_points(T_base_camera, cam).reshape(cam.shape)
    # A top face faces up: a neighbour's side wall, flush with this object's side as the
    # camera sees them, joins the component without a depth step, but is not level.
    flat = keep & level_samples(grid, params.max_top_slope_deg)
    all_pts = grid[flat if np.logical_or.reduce(flat, axis=None) else keep]
    # Far above the seen surface is another object (a taller neighbour), not this top.
    all_pts = all_pts[all_pts[:, 2] <= surface[2] + params.top_max_rise]
    xy, r2 = all_pts[:, :2], params.top_radius ** 2
    centre = surface
    # Re-centre on the top face's centroid: the surface point sits off-centre (toward the
    # camera), so a single pass would cut the far side of the face.
    for _ in range(3):
        pts = all_pts[np.add.reduce((xy - centre[:2]) ** 2, axis=1) <= r2]
        if len(pts) == 0:
            return centre, centre[None]
        top = pts[pts[:, 2] >= np.maximum.reduce(pts[:, 2]) - params.top_band]
        new = np.add.reduce(top) / len(top)   # top_band (4 mm) thin: mean, not median
        moved = math.hypot(new[0] - centre[0], new[1] - centre[1])
        centre = new
        if moved < 1e-3:
            break
    return centre, top


def local_top(centre_uv, surface, depth, depth_m, K, T_base_camera, params):
    """Return the (3,) centroid of the top face near a surface point (``top_face``)."""
    return top_face(centre_uv, surface, depth, depth_m, K, T_base_camera, params)[0]


def pads_on_face(position, across, face, inset):
    """Move a top-down TCP across the finger line until the pads sit ``inset`` inside the face.

    The generator's grasps may hold an object near its end, where a finger pad
    (``FINGER_WIDTH`` across) half over the edge lets it slip out; the TCP keeps the
    keypoint's position unless it lies within ``inset`` of the top face's extent across the
    closing line (``across``, horizontal) -- then it moves in, or to the middle of a face
    narrower than two insets.
    """
    norm = math.hypot(across[0], across[1])
    if len(face) < 2 or norm < 1e-6:
        return position
    d = np.array([across[0] / norm, across[1] / norm, 0.0])
    s = (face - position) @ d
    s_min, s_max = float(np.minimum.reduce(s)), float(np.maximum.reduce(s))
    lo, hi = s_min + inset, s_max - inset
    shift = (s_min + s_max) / 2.0 if lo > hi else min(max(0.0, lo), hi)
    return position + shift * d


def finger_line(tips_uv, rays, z_tcp, T_base_camera):
    """Return the (N, 3) points where the pixels' unit viewing ``rays`` cross height ``z_tcp``.

    ``rays``: of the pixels ``tips_uv`` (``viewing_rays_base``), named in the refusal of a
    ray that does not go down.
    """
    origin = np.asarray(T_base_camera, dtype=float)[:3, 3]
    if np.maximum.reduce(rays[:, 2]) > -1e-3:
        uv = np.asarray(tips_uv, dtype=float).reshape(-1, 2)[int(np.argmax(rays[:, 2]))]
        raise BackprojectionError(f'grasp fingertip at ({uv[0]:.1f}, {uv[1]:.1f}) looks '
                                  f'above the horizon: no finger line')
    return origin + rays * ((z_tcp - origin[2]) / rays[:, 2])[:, None]


def fit_tilt(tips, bases_uv, y_axis, K, T_base_camera, params):
    """Return the approach (3,) that best explains the finger-base pixels.

    The generator's grasps turn about the closing line (``y_axis``, horizontal here) away
    from straight down: the approach is ``cos(t) down + sin(t) h`` with ``h = y x down``
    and ``|t| <= max_tilt_deg``. The bases are the tips moved back ``FINGER_LENGTH`` along
    the approach; ``t`` is found on a 2.5 degree grid, and the least tilted angle whose RMS
    pixel error is within ``tilt_tolerance_px`` of the best is kept (noisy keypoints of a
    top-down grasp stay top-down).
    """
    down = np.array([0.0, 0.0, -1.0])
    T_cb = invert_transform(T_base_camera)
    # Straight down explains the bases within the tolerance: nothing fits better by more.
    if _base_pixel_error(tips, down[None], bases_uv, K, T_cb)[0] <= params.tilt_tolerance_px:
        return down
    h = cross3(y_axis, down)
    t = np.deg2rad(np.arange(-params.max_tilt_deg, params.max_tilt_deg + 1e-9, 2.5))
    z = np.cos(t)[:, None] * down + np.sin(t)[:, None] * h                 # (T, 3)
    err = _base_pixel_error(tips, z, bases_uv, K, T_cb)
    if not np.logical_and.reduce(np.isfinite(err)):
        return down
    ok = np.nonzero(err <= np.minimum.reduce(err) + params.tilt_tolerance_px)[0]
    return z[ok[np.argmin(np.abs(t[ok]))]]


def _base_pixel_error(tips, approaches, bases_uv, K, T_camera_base):
    """(A,) RMS pixel error of the finger bases for each candidate approach (NaN: behind)."""
    bases = tips[None] - gripper.FINGER_LENGTH * approaches[:, None, :]     # (A, 2, 3)
    px = project_points(transform_points(T_camera_base, bases), K).reshape(-1, 2, 2)
    d = px - bases_uv
    return np.sqrt(np.add.reduce(np.add.reduce(d * d, axis=2), axis=1) / 2.0)


def tilted_tcp(origin, ray, top, y_axis):
    """TCP of a tilted grasp: on the centre pixel's ray (``origin``, unit ``ray``), mid-object.

    The contacts of a tilted grasp lie on the object's sides, so the TCP (between them)
    is in the vertical plane through the top face's centroid across the finger line; when
    the ray runs along that plane, the ray's point nearest the vertical through the
    centroid is used instead.
    """
    if abs(ray @ y_axis) > 0.2:
        s = ((top - origin) @ y_axis) / (ray @ y_axis)
    else:
        horizontal = ray[:2]
        s = ((top[:2] - origin[:2]) @ horizontal) / max(horizontal @ horizontal, 1e-9)
    return origin + max(s, 0.0) * ray


NEAR_TIP_MIN_ALONG_VIEW = 0.2
'''Least |cos| between the closing line and the centre's viewing ray for a finger to be in
front of the object (``near_tip_height``).'''
NEAR_TIP_SLACK = 0.01
'''Metres the near fingertip's TCP may lie in front of the seen surface (across the fingers).'''


def near_tip_height(tip_uv, centre_ray, y_axis, surface, depth_m, K, T_base_camera, params):
    """Height of a tilted grasp's TCP from the fingertip nearer the camera, or None.

    When the closing line runs along the view (``|centre_ray . y_axis|`` at least
    ``NEAR_TIP_MIN_ALONG_VIEW``), one finger is in front of the object and its pad presses
    on the surface the camera sees: the near tip's pixel (``tip_uv``) sees the object where
    that finger touches it, and the tips are level with the TCP. This holds on an object's
    side, where the top face (``tilted_tcp``) is far above or off-centre (a bottle's neck).
    None when the near tip has no depth, or the TCP it gives would lie in front of the
    centre's seen ``surface`` point or farther behind it, across the fingers, than half the
    hand's opening (the tip sees something else).
    """
    along = float(centre_ray @ y_axis)
    if abs(along) < NEAR_TIP_MIN_ALONG_VIEW or centre_ray[2] > -1e-3:
        return None
    tip_uv = np.asarray(tip_uv, dtype=float).reshape(1, 2)
    d = sample_depth(depth_m, tip_uv, window=params.depth_window)
    if not math.isfinite(d[0]):
        return None
    z = float(transform_points(T_base_camera, backproject_pixels(tip_uv, d, K))[0, 2])
    # How far behind the seen surface the TCP at that height is, across the fingers.
    behind = ((z - surface[2]) / centre_ray[2]) * abs(along)
    if not -NEAR_TIP_SLACK <= behind <= gripper.MAX_OPENING / 2.0 + NEAR_TIP_SLACK:
        return None
    return z


def _keypoint_name(m, i, centre='grasp point 0'):
    """Name of point ``i`` of m waypoints followed by the grasp keypoints, in refusals."""
    if i < m:
        return f'waypoint point {i}'
    return centre if i == m else f'grasp point {i - m}'


def _check_grasp_count(grasp_uv):
    if len(grasp_uv) != len(gripper.KEYPOINT_NAMES):
        raise BackprojectionError(
            f'a grasp needs {len(gripper.KEYPOINT_NAMES)} keypoints, got {len(grasp_uv)}')


def grasp_pose(grasp_uv, depth_m, K, T_base_camera, params=None):
    """Return (T_base_tcp, width, surface_point, depths (1,)) of a grasp from its 5 keypoints."""
    target = lift_grasp_and_waypoints(grasp_uv, np.zeros((0, 2)), depth_m, K, T_base_camera,
                                      params)
    return target.T_base_tcp, target.width, target.surface_point, target.keypoints_depth


CENTRE_AND_TIPS = [0, 3, 4]
'''Rows of the grasp keypoints (core.gripper order) that lie level with the TCP.'''


def _grasp_from_rays(grasp_uv, surface, centre_depth, rays, depth_m, K, T_base_camera, params):
    """Return (T_base_tcp, width) of checked grasp keypoints.

    ``surface``: the centre keypoint's surface point (base frame) at camera depth
    ``centre_depth``; ``rays``: the (5, 3) unit viewing rays of the keypoints.
    """
    # Top-down first: the TCP grasp_depth below the local top face, on the centre pixel's
    # viewing ray (the centre keypoint is the TCP's projection; the top face's centroid is
    # biased toward the camera on objects wider than top_radius: 9 mm median error across
    # the closing line against the generator's grasps, 2.5 mm on the ray --
    # bench/bench_grasp_accuracy.py).
    top, face = top_face(grasp_uv[0], surface, centre_depth, depth_m, K, T_base_camera,
                         params)
    z_tcp = max(top[2] - params.grasp_depth, params.table_z + params.min_tcp_height)
    # Finger line: the fingertips lie level with the TCP (the closing line is horizontal,
    # tilted or not), so each tip is where its pixel's viewing ray crosses the TCP's height
    # (a constant camera depth would tilt the line whenever it runs along the image's
    # vertical). The TCP and the tips at that height in one go:
    level = finger_line(grasp_uv[CENTRE_AND_TIPS], rays[CENTRE_AND_TIPS], z_tcp, T_base_camera)
    position, tips = level[0], level[1:]
    tips_uv = grasp_uv[3:5]
    (lu, lv), (ru, rv) = tips_uv.tolist()
    if math.hypot(lu - ru, lv - rv) < params.min_finger_line_px:
        raise BackprojectionError('grasp fingertips coincide in the image: no finger line')
    z_near = False   # the near fingertip's height: not looked up yet
    for attempt in range(2):
        if attempt:   # tilted: the tips at the TCP's new height
            tips = finger_line(tips_uv, rays[3:5], z_tcp, T_base_camera)
        line = tips[0] - tips[1]
        length = math.hypot(line[0], line[1])
        if length < 1e-4:
            raise BackprojectionError('grasp finger line is vertical in the robot frame: no yaw')
        y_axis = np.array([line[0] / length, line[1] / length, 0.0])
        z_axis = fit_tilt(tips, grasp_uv[1:3], y_axis, K, T_base_camera, params)
        top_down = z_axis[2] < -math.cos(math.radians(params.top_down_deg))
        if top_down:
            break
        # Tilted: the TCP is not under the top face but on the centre ray, inside the object:
        # level with the near fingertip where one finger is in front (the finger line's
        # direction does not depend on the height, so neither does this), else in the top
        # face's mid-plane.
        if z_near is False:
            near = 1 if rays[0] @ y_axis > 0.0 else 0   # y points to the left tip (index 0)
            z_near = near_tip_height(tips_uv[near], rays[0], y_axis, surface, depth_m, K,
                                     T_base_camera, params)
        if z_near is None:
            position = tilted_tcp(T_base_camera[:3, 3], rays[0], top, y_axis)
        else:
            position = finger_line(grasp_uv[:1], rays[:1], z_near, T_base_camera)[0]
        position[2] = max(position[2], params.table_z + params.min_tcp_height)
        z_tcp = position[2]
    x_axis = cross3(y_axis, z_axis)
    if top_down:
        position = pads_on_face(position, x_axis, face, params.pad_inset)
    T = make_transform(np.array([x_axis, y_axis, z_axis]).T, position)
    return T, math.sqrt(line.dot(line))


def down_direction_px(goal_uv, K, T_base_camera):
    """Unit image direction in which the world vertical through ``goal_uv`` goes down.

    Every vertical line of the world passes through the vanishing point of "down"; the line
    from the goal pixel toward it is the image of the vertical through the goal, whatever the
    goal's depth. A camera that does not look downward falls back to straight down the image.
    """
    down_cam = np.asarray(T_base_camera, dtype=float)[:3, :3].T @ np.array([0.0, 0.0, -1.0])
    goal = np.asarray(goal_uv, dtype=float)
    if down_cam[2] > 1e-6:
        vp = (K @ down_cam)[:2] / down_cam[2]
        d = vp - goal
        if np.linalg.norm(d) > 1e-6:
            return d / np.linalg.norm(d)
    return np.array([0.0, 1.0])


def target_below(goal_uv, depth_m, K, T_base_camera, params=None):
    """Return (point (3,), found) of the first object surface below the goal pixel.

    Scans from ``goal_uv`` along the image of the world vertical through it (toward the
    vanishing point of "down"), in a 5-pixel-wide strip, for ``target_scan_px`` pixels; the
    first base-frame point between ``min_object_height`` and ``max_object_height`` above the
    table is on the target's top, and the centroid of that top face (``local_top``) is
    returned. ``found`` is False when the scan meets no object (the goal's own surface
    point is returned then).
    """
    params = params or BackprojectionParams()
    h, w = depth_m.shape
    goal = np.asarray(goal_uv, dtype=float)
    along = down_direction_px(goal, K, T_base_camera)
    across = np.array([-along[1], along[0]])
    s = np.arange(params.target_scan_px, dtype=float)
    offsets = np.arange(-2, 3, dtype=float)
    uv = goal + s[:, None, None] * along + offsets[None, :, None] * across   # (S, 5, 2)
    uv = np.round(uv.reshape(-1, 2))
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    order = np.repeat(s, len(offsets))[inside]
    uv = uv[inside]
    if len(uv):
        d = depth_m[uv[:, 1].astype(int), uv[:, 0].astype(int)]
        valid = np.isfinite(d) & (d > 0)
        if np.any(valid):
            uv, order, d = uv[valid], order[valid], d[valid]
            cam = backproject_pixels(uv, d, K)
            # Heights only (one row of the transform), full points for the chosen few.
            z = cam @ T_base_camera[2, :3] + T_base_camera[2, 3]
            # Above the table, below the robot (its hand waits higher, at its home pose).
            high = (z > params.table_z + params.min_object_height) & \
                (z < params.table_z + params.max_object_height)
            if np.any(high):
                sel = high & (order <= order[high].min() + 2)
                hit = np.median(transform_points(T_base_camera, cam[sel]), axis=0)
                # The scan meets the top's far edge first: centre on the top face instead.
                i = int(np.nonzero(sel)[0][0])
                return local_top(uv[i], hit, float(d[i]), depth_m, K, T_base_camera,
                                 params), True
    pts_cam, _ = lift_pixels(goal[None], depth_m, K, params.depth_window, 'goal waypoint')
    return transform_points(T_base_camera, pts_cam)[0], False


@functools.lru_cache(maxsize=8)
def _pixel_rays(K_bytes, height, width, stride):
    """(h, w, 3) camera rays (x/z, y/z, 1) of every ``stride``-th pixel (cached per camera)."""
    us, vs = np.arange(0, width, stride), np.arange(0, height, stride)
    return backproject_grid(np.ones((len(vs), len(us))), us, vs,
                            np.frombuffer(K_bytes).reshape(3, 3))


def object_cloud(depth_m, K, T_base_camera, params):
    """Return the (N, 3) base-frame points of the objects, from every ``cloud_stride`` pixel.

    Kept: above the table, below the robot's waiting hand, away from the robot base. Heights
    are computed for every pixel first (one row of the transform), whole points only for
    the kept ones.
    """
    h, w = depth_m.shape
    rays = _pixel_rays(np.asarray(K, dtype=float).tobytes(), h, w, params.cloud_stride)
    d = depth_m[::params.cloud_stride, ::params.cloud_stride]
    T = np.asarray(T_base_camera, dtype=float)
    with np.errstate(invalid='ignore'):
        z = (rays @ T[2, :3]) * d + (T[2, 3] - params.table_z)
        keep = (z > params.min_object_height) & (z < params.max_object_height) & (d > 0)
    cam = rays[keep] * d[keep][:, None]
    pts = cam @ T[:3, :3].T + T[:3, 3]
    return pts[np.hypot(pts[:, 0], pts[:, 1]) > params.robot_exclusion_radius]


def height_map(cloud, cell):
    """Rasterise the object cloud onto a horizontal grid of ``cell`` metres.

    Returns (heights (X, Y): the highest point's z per cell, -inf where empty; origin (2,)).
    With the default stride (4 pixels) and cell (1.5 cm) an object's cells are connected at
    the simulated camera's distance.
    """
    pts = np.asarray(cloud, dtype=float).reshape(-1, 3)
    if len(pts) == 0:
        return np.full((1, 1), -np.inf), np.zeros(2)
    origin = pts[:, :2].min(axis=0) - 2 * cell
    idx = np.floor((pts[:, :2] - origin) / cell).astype(int)
    heights = np.full(tuple(idx.max(axis=0) + 3), -np.inf)
    np.maximum.at(heights, (idx[:, 0], idx[:, 1]), pts[:, 2])
    return heights, origin


def group_at(labels, cell_xy, reach_cells):
    """(K, 2) cells of the labelled group nearest ``cell_xy`` (within ``reach_cells``), or None."""
    occ = np.argwhere(labels > 0)
    if len(occ) == 0:
        return None
    d = np.hypot(*(occ - cell_xy).T)
    if d.min() > reach_cells:
        return None
    return np.argwhere(labels == labels[tuple(occ[int(np.argmin(d))])])


@functools.lru_cache(maxsize=32)
def _hand_points_local(opening, spacing):
    """(P, 3) points filling the hand's boxes at ``opening`` (gripper frame), cached."""
    pts = []
    for extents, T_box in gripper.gripper_boxes(opening):
        axes = [np.linspace(-e / 2.0, e / 2.0, max(int(np.ceil(e / spacing)), 1) + 1)
                for e in extents]
        grid = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, 3)
        pts.append(grid @ T_box[:3, :3].T + T_box[:3, 3])
    return np.vstack(pts)


def hand_clearance_cells(T_grasp, opening, origin, cell):
    """The hand's cells relative to the TCP's cell and the lowest hand height in each.

    Points filling the hand's boxes (``core.gripper.gripper_boxes`` at ``opening``, one per
    grid cell of spacing) are posed with the grasp; returns (offsets (H, 2) int, lowest z
    (H,)) per grid cell.
    """
    T = np.asarray(T_grasp, dtype=float)
    local = _hand_points_local(round(float(opening), 3), float(cell))
    world = local @ T[:3, :3].T + T[:3, 3]
    tcp_cell = np.floor((T[:2, 3] - origin) / cell).astype(int)
    offsets = np.floor((world[:, :2] - origin) / cell).astype(int) - tcp_cell
    # One entry per cell, its lowest point: sort by cell then height, keep the first.
    key = (offsets[:, 0] + 1000) * 2001 + (offsets[:, 1] + 1000)
    order = np.lexsort((world[:, 2], key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep = order[first]
    return offsets[keep], world[keep, 2]


def _lookup(grid, cells, outside):
    """``grid`` at integer ``cells`` (..., 2); ``outside`` where a cell is off the grid."""
    ok = np.all((cells >= 0) & (cells < grid.shape), axis=-1)
    out = np.full(ok.shape, outside, dtype=grid.dtype)
    inside = cells[ok]
    out[ok] = grid[inside[:, 0], inside[:, 1]]
    return out


def place_reachable(spot_xy, T_grasp, params):
    """Whether the arm reaches the hand at each place spot (..., 2); bool (...,).

    The horizontal reach alone is not enough: a tilted grasp puts the wrist up to the
    flange length farther out than the TCP, and the executor also lifts the hand
    ``place_lift_height`` above the spot (coming down onto it, at least that high) and
    backs it out ``place_retreat_offset`` along the approach after letting go. The hand
    keeps the grasp's orientation and height (the object is put down as it was held); each
    of the three poses needs its wrist within ``arm_wrist_reach`` of the shoulder -- a
    necessary condition (``bopask_gen.sim.ik.wrist_distances``), the executor's IK decides.
    """
    from bopask_gen.sim.ik import wrist_distances
    T = np.asarray(T_grasp, dtype=float)
    approach = T[:3, 2]
    xy = np.asarray(spot_xy, dtype=float)
    at = np.concatenate([xy, np.full(xy.shape[:-1] + (1,), T[2, 3])], axis=-1)
    ok = np.ones(xy.shape[:-1], dtype=bool)
    for offset in ([0.0, 0.0, 0.0], [0.0, 0.0, params.place_lift_height],
                   -params.place_retreat_offset * approach):
        ok &= wrist_distances(at + offset, approach, params.arm_shoulder, params.arm_flange,
                              params.arm_wrist_offset) <= params.arm_wrist_reach
    return ok


def free_place(target, start_xy, cloud, params, n_directions=16, hand=None):
    """Where to put the held object down next to the target, or None.

    On the occupancy grid of the object cloud (``height_map``, 8-connected groups of cells =
    objects), the held object's footprint is the group under ``start_xy`` (the grasp) and
    the target's the group under ``target`` (its top centre); a disc of
    ``place_clear_radius`` stands in for the held one when there is none or both are one
    group. Along each of ``n_directions`` directions from the target's top centre -- the one
    facing the start first, then alternately either side -- the held footprint is slid
    outward in one-cell steps until it keeps ``place_gap`` from every other occupied cell
    (the target's included). A spot counts when its gap to the target's footprint is at
    most ``place_max_gap`` (else something else stands between them), and of those the one
    whose footprint comes nearest the target's top centre is taken. The
    target's footprint is its group's cells within ``place_target_radius`` of its top centre:
    objects that touch share a group, and a spot beside the far end of such a cluster is not
    next to the target.
    Spots whose TCP lies farther than ``place_max_reach`` horizontally from the robot base
    (beyond a top-down hand's reach) or nearer than ``place_min_reach`` are not used; with
    ``hand``, neither are those where the hand in the grasp's orientation would be out of
    the arm's reach (``place_reachable``).
    Returns the (3,) TCP position to place at (horizontal: the grasp moved with its
    footprint; height: the target's), or None.

    ``hand=(T_grasp, opening)`` also keeps the open hand clear: the object is put down at its
    grasp height, and no object top (the held one excepted) may reach within ``place_gap``
    of the hand above it -- fingers and palm come straight down beside a tall target.
    """
    from scipy import ndimage
    cell = params.place_cell
    target = np.asarray(target, dtype=float)
    start_xy = np.asarray(start_xy, dtype=float)[:2]
    heights, origin = height_map(cloud, cell)
    occupied = np.isfinite(heights)
    labels, _ = ndimage.label(occupied, np.ones((3, 3), dtype=bool))
    start_cell = np.floor((start_xy - origin) / cell).astype(int)
    goal_cell = (target[:2] - origin) / cell - 0.5
    reach = params.place_clear_radius / cell
    held = group_at(labels, start_cell, reach)
    goal = group_at(labels, goal_cell, params.top_radius / cell)
    if held is None or (goal is not None and labels[tuple(held[0])] == labels[tuple(goal[0])]):
        r = int(np.ceil(reach))
        held = np.argwhere(np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r) - r + start_cell
        if goal is not None:   # one group: the target is what lies beyond the disc
            goal = goal[np.min(np.hypot(*(goal[:, None] - held[None]).transpose(2, 0, 1)),
                               axis=1) > 0.5]
    blocked = occupied.copy()
    inside = np.all((held >= 0) & (held < occupied.shape), axis=1)
    blocked[held[inside, 0], held[inside, 1]] = False   # the held object moves away
    # Rasterising already widens each footprint by up to half a cell on every side.
    gap_cells = int(round(params.place_gap / cell))
    if gap_cells > 0:
        blocked = ndimage.binary_dilation(blocked, np.ones((3, 3), dtype=bool),
                                          iterations=gap_cells)
    offsets = held - start_cell                                     # (A, 2)
    hand_cells, hand_z = np.zeros((0, 2), dtype=int), np.zeros(0)
    if hand is not None:
        hand_cells, hand_z = hand_clearance_cells(hand[0], hand[1], origin, cell)
        others = heights.copy()
        others[held[inside, 0], held[inside, 1]] = -np.inf
    base = np.arctan2(*(start_xy - target[:2])[::-1])
    steps = np.arange(n_directions)
    order = np.where(steps % 2 == 1, (steps + 1) // 2, -(steps // 2))
    angles = base + 2.0 * np.pi * order / n_directions
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)       # (D, 2)
    steps = np.arange(int(params.place_max_distance / cell) + 1)
    goal_cells = goal if goal is not None and len(goal) else np.round(goal_cell)[None]
    near = np.hypot(*(goal_cells - goal_cell).T) <= params.place_target_radius / cell
    goal_cells = goal_cells[near] if np.any(near) else goal_cells
    # All directions at once: (D, R) spots along each, (D, R, A) cells of the held footprint.
    spot_cells = np.round(goal_cell + steps[None, :, None] * dirs[:, None, :]).astype(int)
    cells = spot_cells[:, :, None, :] + offsets
    hit = np.any(_lookup(blocked, cells, False), axis=2)
    if len(hand_cells):
        tops = _lookup(others, spot_cells[:, :, None, :] + hand_cells, -np.inf)
        hit |= np.any(tops > hand_z - params.place_gap, axis=2)
    # The hand must reach down there: a spot beyond the arm's top-down reach is no spot, nor
    # one next to the robot's base (the wrist turns over coming down there).
    spot_xy = start_xy + (spot_cells - start_cell) * cell                # (D, R, 2)
    radius = np.hypot(spot_xy[..., 0], spot_xy[..., 1])
    hit |= (radius > params.place_max_reach) | (radius < params.place_min_reach)
    if hand is not None:
        hit |= ~place_reachable(spot_xy, hand[0], params)
    free = ~hit
    first = np.argmax(free, axis=1)                                  # (D,) first free spot
    ok = free[np.arange(len(dirs)), first]
    best = None
    for d in np.nonzero(ok)[0]:
        placed = cells[d, first[d]]
        # Edge to edge: cell centres are one cell apart when the footprints touch.
        gap = (np.min(np.hypot(*(placed[:, None] - goal_cells[None]).transpose(2, 0, 1)))
               - 1.0) * cell
        if gap > params.place_max_gap:
            continue
        # Nearest the target's own top centre (not the far side of a cluster it touches),
        # half a cell per direction step away from the start's side (the path arrives there).
        score = np.min(np.hypot(*(placed - goal_cell).T)) + 0.5 * d
        if best is None or score < best[0]:
            best = (score, spot_xy[d, first[d]])
    if best is None:
        return None
    return np.array([best[1][0], best[1][1], target[2]])


def lift_keypoints(grasp_uv, waypoints_uv, depth_m, K, T_base_camera, params=None):
    """Return a GraspTarget: the grasp, the waypoints and where to put the object down.

    ``lift_grasp_and_waypoints`` (the back-projection proper) then ``locate_place`` (the
    scene analysis for placing). Raises BackprojectionError naming the first point that
    cannot be lifted, or why there is no place.
    """
    params = params or BackprojectionParams()
    target = lift_grasp_and_waypoints(grasp_uv, waypoints_uv, depth_m, K, T_base_camera,
                                      params)
    return locate_place(target, waypoints_uv, depth_m, K, T_base_camera, params)


@functools.lru_cache(maxsize=64)
def _grasp_first(m):
    """Indices putting the grasp centre (row ``m``) before the ``m`` waypoints' rows."""
    return np.array([m] + list(range(m)))


def lift_grasp_and_waypoints(grasp_uv, waypoints_uv, depth_m, K, T_base_camera, params=None):
    """Return a GraspTarget with the grasp pose, the waypoints' surface points and rays.

    All the keypoints in one pass: one image check, one depth lookup (the waypoints and the
    grasp centre), one set of viewing rays.
    """
    params = params or BackprojectionParams()
    depth_m = np.asarray(depth_m)  # float32 as published: a float64 copy costs ~0.3 ms
    K = np.asarray(K, dtype=float)
    T_base_camera = np.asarray(T_base_camera, dtype=float)
    grasp_uv = np.asarray(grasp_uv, dtype=float).reshape(-1, 2)
    waypoints_uv = np.asarray(waypoints_uv, dtype=float).reshape(-1, 2)
    _check_grasp_count(grasp_uv)
    m = len(waypoints_uv)
    uv = np.empty((m + len(grasp_uv), 2))      # the waypoints, then the grasp keypoints
    uv[:m], uv[m:] = waypoints_uv, grasp_uv
    h, w = depth_m.shape
    _refuse_outside(uv, functools.partial(_keypoint_name, m), w, h)
    depth = sampled_depths(uv[:m + 1], depth_m, params.depth_window,
                           functools.partial(_keypoint_name, m, centre='grasp centre point 0'))
    rays = pixel_rays_base(uv, K, T_base_camera)
    origin = T_base_camera[:3, 3]
    points = origin + rays[:m + 1] * depth[:, None]
    unit = unit_rows(rays)
    T, width = _grasp_from_rays(grasp_uv, points[m], float(depth[m]), unit[m:], depth_m, K,
                                T_base_camera, params)
    waypoint_rays = np.empty((m, 6))     # (origin, unit direction) per waypoint
    waypoint_rays[:, :3], waypoint_rays[:, 3:] = origin, unit[:m]
    return GraspTarget(T_base_tcp=T, width=width, surface_point=points[m],
                       waypoints=points[:m], waypoint_rays=waypoint_rays,
                       keypoints_depth=depth[_grasp_first(m)])


def locate_place(target, waypoints_uv, depth_m, K, T_base_camera, params=None):
    """Fill ``target``'s target point, place point and scene top from the depth image.

    The target is the object under the last waypoint (``target_below``); the place is the
    free spot next to it (``free_place``). Without waypoints there is nothing to place next
    to: the fields stay None. Returns ``target``.
    """
    params = params or BackprojectionParams()
    depth_m = np.asarray(depth_m)
    waypoints_uv = np.asarray(waypoints_uv, dtype=float).reshape(-1, 2)
    if len(waypoints_uv) == 0:
        return target
    cloud = object_cloud(depth_m, K, T_base_camera, params)
    goal, _ = target_below(waypoints_uv[-1], depth_m, K, T_base_camera, params)
    # The hand opens to the grasp width plus the executor's margin (about 1.5 cm a side).
    opening = min(target.width + 0.03, gripper.MAX_OPENING)
    place = free_place(goal, target.position, cloud, params, hand=(target.T_base_tcp, opening))
    if place is None:
        # Say when the arm's reach (not the room around the target) left no spot: the
        # hand's orientation, fixed by the grasp, is what puts those spots out of reach.
        unlimited = dataclasses.replace(params, arm_wrist_reach=np.inf)
        why = ''
        if free_place(goal, target.position, cloud, unlimited,
                      hand=(target.T_base_tcp, opening)) is not None:
            why = (f': with this grasp (tilted {target.tilt_deg:.0f} deg) the free spots put '
                   f"the wrist beyond the arm's reach ({params.arm_wrist_reach:.3f} m)")
            # The same three hand poses at the grasp itself: grasp, lift, pre-grasp.
            if not place_reachable(target.position[:2], target.T_base_tcp, params):
                why += ', as does the grasp itself (its grasp, lift or pre-grasp pose)'
        raise BackprojectionError(
            f'no free spot within {params.place_max_gap:.2f} m of the target at '
            f'({goal[0]:.3f}, {goal[1]:.3f}) m to put the object down{why}')
    target.target_point = goal
    target.place_point = place
    target.scene_top_z = float(cloud[:, 2].max()) if len(cloud) else params.table_z
    return target


def warm_up(params=None):
    """Run ``lift_keypoints`` once on a made-up scene; return the milliseconds it took.

    The first request of a process pays for imports (scipy.ndimage) and first-call set-up
    (about 80 ms against 1 ms): a node calls this at start-up instead. The scene: a camera
    0.7 m over a table, looking down, two boxes; grasp the one, put it beside the other.
    """
    import time
    K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])
    T_base_camera = make_transform(np.diag([1.0, -1.0, -1.0]), [0.5, 0.0, 0.7])
    depth = np.full((480, 640), 0.7, dtype=np.float32)
    depth[200:280, 280:360] = 0.64                  # the box to pick, 6 cm high
    depth[200:280, 440:520] = 0.62                  # the target, 8 cm high
    grasp = [[320, 240], [300, 238], [340, 238], [300, 240], [340, 240]]
    waypoints = [[320, 240], [400, 240], [480, 240]]
    t0 = time.perf_counter()
    lift_keypoints(grasp, waypoints, depth, K, T_base_camera, params)
    return (time.perf_counter() - t0) * 1000.0
