"""Lift the VLM's 2D keypoints to 3D robot-frame targets (the core of the backprojection node).

Inputs: grasp keypoints (5 pixels, core.gripper order: centre, left base, right base, left
tip, right tip), trajectory waypoints (M pixels), the aligned depth image in metres, K and
the camera extrinsic ``T_base_camera`` (optical frame -> robot base frame).

Geometry, and why:

- Depth is read with a robust window median (``core.camera.sample_depth``); a keypoint whose
  window has no valid pixel is refused, never guessed.
- The grasp centre pixel sees the object's visible surface, while the TCP lies inside the
  object further along that ray, at a depth the 2D keypoints do not pin down. For a
  top-down grasp the hand must straddle the object's top, so the TCP is centred under the
  local top: among the depth points within ``top_radius`` (horizontally) of the surface
  point, those within ``top_band`` of the highest one form the top face; the TCP goes
  ``grasp_depth`` below it at its centroid (and at least ``min_tcp_height`` above the
  table).
- The approach is top-down in the base frame (the robot grasps from above); the yaw comes from
  the finger line (left tip minus right tip, each where its pixel's ray crosses the TCP's
  height: the tips are level with the TCP, and their depth pixels may see the background);
  the opening is that line's length.
- Waypoints are lifted to the surface they point at, and their viewing rays are kept: the
  generator's waypoints hang in the air (positions of the carried object), so the executor
  intersects the rays with its carrying height instead of trusting the surface behind them
  (which may be the robot's own arm).
- Placing and carrying need the scene's free space, which the 2D waypoints do not give:
  from a subsampled cloud of the depth image (robot base excluded), the place point is the
  first of 16 directions around the target (nearest the object's start side first) at
  ``place_standoff`` from the target's top centre with no object point within
  ``place_clear_radius`` (the object being moved does not count); none free -> refused.
  ``scene_top_z`` (the highest object point) tells the executor how high to carry.
- The generator's last waypoint hangs in the air *above* the target object, so its pixel often
  sees the table behind the target. The target point is therefore the first object surface
  (higher than ``min_object_height`` above the table) found scanning from the last waypoint
  along the image of the world vertical through it -- "the thing under the goal" -- or the
  goal's own surface point if none.
"""

from dataclasses import dataclass, field

import numpy as np

from bopask_gen.core import gripper
from bopask_gen.core.camera import backproject_pixels, pixels_inside, sample_depth
from bopask_gen.core.transforms import (
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
    grasp_depth: float = 0.02
    table_z: float = 0.0
    min_tcp_height: float = 0.015
    min_finger_line_px: float = 2.0
    min_object_height: float = 0.015
    max_object_height: float = 0.40
    place_standoff: float = 0.13
    place_clear_radius: float = 0.05
    robot_exclusion_radius: float = 0.25
    cloud_stride: int = 8
    top_radius: float = 0.04
    top_band: float = 0.004
    target_scan_px: int = 200


@dataclass
class GraspTarget:
    """A top-down grasp in the robot base frame plus the surface points of the waypoints."""

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
    def yaw(self):
        """Angle of the finger-closing line (gripper y axis) about base z, radians."""
        y = self.T_base_tcp[:3, 1]
        return float(np.arctan2(y[1], y[0]))


def check_pixels(uv, width, height, what):
    """Raise BackprojectionError if any pixel is non-finite or outside the image."""
    uv = np.asarray(uv, dtype=float).reshape(-1, 2)
    inside = pixels_inside(uv, width, height)
    if not np.all(inside):
        i = int(np.nonzero(~inside)[0][0])
        raise BackprojectionError(
            f'{what} point {i} at ({uv[i, 0]:.1f}, {uv[i, 1]:.1f}) is outside the '
            f'{width}x{height} image')
    return uv


def lift_pixels(uv, depth_m, K, window, what):
    """Return (N, 3) camera-frame points and (N,) depths; refuse points with no valid depth."""
    uv = np.asarray(uv, dtype=float).reshape(-1, 2)
    h, w = depth_m.shape
    check_pixels(uv, w, h, what)
    depth = sample_depth(depth_m, uv, window=window)
    bad = ~np.isfinite(depth)
    if np.any(bad):
        i = int(np.nonzero(bad)[0][0])
        raise BackprojectionError(
            f'no valid depth in the {window}x{window} window around {what} point {i} at '
            f'({uv[i, 0]:.1f}, {uv[i, 1]:.1f})')
    return backproject_pixels(uv, depth, K), depth


def viewing_ray_base(uv, K, T_base_camera):
    """Return the camera centre and the unit viewing ray of a pixel in the base frame."""
    d_cam = backproject_pixels(np.asarray(uv, dtype=float).reshape(1, 2), [1.0], K)[0]
    d_base = rotate_vectors(T_base_camera, d_cam)[0]
    return np.asarray(T_base_camera, dtype=float)[:3, 3].copy(), d_base / np.linalg.norm(d_base)


def local_top(centre_uv, surface, depth, depth_m, K, T_base_camera, params):
    """Return the (3,) centroid of the top face near a surface point (base frame).

    The pixel window covers 1.5 ``top_radius`` at the point's depth; points farther than
    ``top_radius`` horizontally from the current centre, and ``top_band`` under the highest
    one, are dropped.
    """
    h, w = depth_m.shape
    r_px = int(np.ceil(1.5 * K[0, 0] * params.top_radius / max(depth, 1e-3)))
    u, v = int(round(centre_uv[0])), int(round(centre_uv[1]))
    v0, v1 = max(v - r_px, 0), min(v + r_px + 1, h)
    u0, u1 = max(u - r_px, 0), min(u + r_px + 1, w)
    step = 3  # every third pixel: ~4 mm spacing at 0.8 m is plenty for a centroid
    patch = depth_m[v0:v1:step, u0:u1:step]
    vv, uu = np.nonzero(np.isfinite(patch) & (patch > 0))
    if len(vv) == 0:
        return surface
    uv = np.stack([uu * step + u0, vv * step + v0], axis=1).astype(float)
    all_pts = transform_points(T_base_camera, backproject_pixels(uv, patch[vv, uu], K))
    xy, r2 = all_pts[:, :2], params.top_radius ** 2
    centre = surface
    # Re-centre on the top face's centroid: the surface point sits off-centre (toward the
    # camera), so a single pass would cut the far side of the face.
    for _ in range(3):
        pts = all_pts[np.sum((xy - centre[:2]) ** 2, axis=1) <= r2]
        if len(pts) == 0:
            return centre
        top = pts[pts[:, 2] >= pts[:, 2].max() - params.top_band]
        new = np.array([top[:, 0].mean(), top[:, 1].mean(), float(np.median(top[:, 2]))])
        moved = np.linalg.norm(new[:2] - centre[:2])
        centre = new
        if moved < 1e-3:
            break
    return centre


def top_down_grasp(grasp_uv, depth_m, K, T_base_camera, params=None):
    """Return (T_base_tcp, width, surface_point, depths) of a top-down grasp from 5 keypoints."""
    params = params or BackprojectionParams()
    grasp_uv = np.asarray(grasp_uv, dtype=float).reshape(-1, 2)
    if len(grasp_uv) != len(gripper.KEYPOINT_NAMES):
        raise BackprojectionError(
            f'a grasp needs {len(gripper.KEYPOINT_NAMES)} keypoints, got {len(grasp_uv)}')
    h, w = depth_m.shape
    check_pixels(grasp_uv, w, h, 'grasp')
    centre_cam, centre_depth = lift_pixels(grasp_uv[:1], depth_m, K, params.depth_window,
                                           'grasp centre')
    surface = transform_points(T_base_camera, centre_cam)[0]

    # TCP: under the centroid of the local top face, grasp_depth below it.
    top = local_top(grasp_uv[0], surface, float(centre_depth[0]), depth_m, K, T_base_camera,
                    params)
    z_tcp = max(top[2] - params.grasp_depth, params.table_z + params.min_tcp_height)
    position = np.array([top[0], top[1], z_tcp])

    # Finger line: the fingertips of a top-down grasp lie level with the TCP, so each tip is
    # where its pixel's viewing ray crosses the TCP's height (a constant camera depth would
    # tilt the line whenever it runs along the image's vertical).
    tips_uv = grasp_uv[[3, 4]]
    if np.linalg.norm(tips_uv[0] - tips_uv[1]) < params.min_finger_line_px:
        raise BackprojectionError('grasp fingertips coincide in the image: no finger line')
    tips = []
    for uv in tips_uv:
        origin, ray = viewing_ray_base(uv, K, T_base_camera)
        if ray[2] > -1e-3:
            raise BackprojectionError(f'grasp fingertip at ({uv[0]:.1f}, {uv[1]:.1f}) looks '
                                      f'above the horizon: no top-down finger line')
        tips.append(origin + ray * (z_tcp - origin[2]) / ray[2])
    line = tips[0] - tips[1]
    horizontal = np.array([line[0], line[1], 0.0])
    if np.linalg.norm(horizontal) < 1e-4:
        raise BackprojectionError('grasp finger line is vertical in the robot frame: no yaw')
    y_axis = horizontal / np.linalg.norm(horizontal)
    z_axis = np.array([0.0, 0.0, -1.0])
    x_axis = np.cross(y_axis, z_axis)
    T = make_transform(np.stack([x_axis, y_axis, z_axis], axis=1), position)
    width = float(np.linalg.norm(line))
    return T, width, surface, centre_depth


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


def object_cloud(depth_m, K, T_base_camera, params):
    """Return the (N, 3) base-frame points of the objects, from every ``cloud_stride`` pixel.

    Kept: above the table, below the robot's waiting hand, away from the robot base.
    """
    d = depth_m[::params.cloud_stride, ::params.cloud_stride]
    vv, uu = np.nonzero(np.isfinite(d) & (d > 0))
    uv = np.stack([uu, vv], axis=1).astype(float) * params.cloud_stride
    pts = transform_points(T_base_camera, backproject_pixels(uv, d[vv, uu], K))
    z = pts[:, 2] - params.table_z
    keep = (z > params.min_object_height) & (z < params.max_object_height)
    keep &= np.hypot(pts[:, 0], pts[:, 1]) > params.robot_exclusion_radius
    return pts[keep]


def free_place(target, start_xy, cloud, params, n_directions=16):
    """First free spot ``place_standoff`` from the target, nearest the start side first.

    Free: no object point within ``place_clear_radius`` (horizontally) of the spot, points
    within ``place_clear_radius`` of ``start_xy`` (the object being moved) not counted.
    Returns (3,) at the target's height, or None.
    """
    target = np.asarray(target, dtype=float)
    start_xy = np.asarray(start_xy, dtype=float)[:2]
    others = cloud[np.hypot(*(cloud[:, :2] - start_xy).T) > params.place_clear_radius + 0.03]
    base = np.arctan2(*(start_xy - target[:2])[::-1])
    steps = np.arange(n_directions)
    # 0, +1, -1, +2, -2, ... directions away from the one facing the start.
    order = np.where(steps % 2 == 1, (steps + 1) // 2, -(steps // 2))
    for k in order:
        a = base + 2.0 * np.pi * k / n_directions
        spot = target[:2] + params.place_standoff * np.array([np.cos(a), np.sin(a)])
        if len(others) == 0 or np.min(np.hypot(*(others[:, :2] - spot).T)) > \
                params.place_clear_radius:
            return np.array([spot[0], spot[1], target[2]])
    return None


def lift_keypoints(grasp_uv, waypoints_uv, depth_m, K, T_base_camera, params=None):
    """Return a GraspTarget: the top-down grasp and the waypoints' surface points (base frame).

    Raises BackprojectionError naming the first point that cannot be lifted.
    """
    params = params or BackprojectionParams()
    depth_m = np.asarray(depth_m)  # float32 as published: a float64 copy costs ~0.3 ms
    T, width, surface, depths = top_down_grasp(grasp_uv, depth_m, K, T_base_camera, params)
    waypoints_uv = np.asarray(waypoints_uv, dtype=float).reshape(-1, 2)
    if len(waypoints_uv):
        pts_cam, wp_depth = lift_pixels(waypoints_uv, depth_m, K, params.depth_window,
                                        'waypoint')
        waypoints = transform_points(T_base_camera, pts_cam)
        depths = np.concatenate([depths, wp_depth])
        target, _ = target_below(waypoints_uv[-1], depth_m, K, T_base_camera, params)
        rays = np.array([np.concatenate(viewing_ray_base(uv, K, T_base_camera))
                         for uv in waypoints_uv])
        cloud = object_cloud(depth_m, K, T_base_camera, params)
        place = free_place(target, T[:3, 3], cloud, params)
        if place is None:
            raise BackprojectionError(
                f'no free spot {params.place_standoff:.2f} m around the target at '
                f'({target[0]:.3f}, {target[1]:.3f}) m to put the object down')
        scene_top = float(cloud[:, 2].max()) if len(cloud) else params.table_z
    else:
        waypoints = np.zeros((0, 3))
        target = place = scene_top = None
        rays = np.zeros((0, 6))
    return GraspTarget(T_base_tcp=T, width=width, surface_point=surface, waypoints=waypoints,
                       target_point=target, waypoint_rays=rays, place_point=place,
                       scene_top_z=scene_top, keypoints_depth=depths)
