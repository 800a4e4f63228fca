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
  the finger line (left tip minus right tip, both lifted at the TCP's depth so a fingertip
  over the background does not tilt the line); the opening is that line's length.
- Waypoints are lifted to the surface they point at, and their viewing rays are kept: the
  generator's waypoints hang in the air (positions of the carried object), so the executor
  intersects the rays with its carrying height instead of trusting the surface behind them
  (which may be the robot's own arm).
- The generator's last waypoint hangs in the air *above* the target object, so its pixel often
  sees the table behind the target. The target point is therefore the first object surface
  (higher than ``min_object_height`` above the table) found scanning down the image from the
  last waypoint -- "the thing under the goal" -- or the goal's own surface point if none.
"""

from dataclasses import dataclass, field

import numpy as np

from bopask_gen.core import gripper
from bopask_gen.core.camera import backproject_pixels, pixels_inside, sample_depth
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
    grasp_depth: float = 0.02
    table_z: float = 0.0
    min_tcp_height: float = 0.015
    min_finger_line_px: float = 2.0
    min_object_height: float = 0.015
    top_radius: float = 0.04
    top_band: float = 0.004
    target_scan_px: int = 160


@dataclass
class GraspTarget:
    """A top-down grasp in the robot base frame plus the surface points of the waypoints."""

    T_base_tcp: np.ndarray
    width: float
    surface_point: np.ndarray
    waypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    target_point: np.ndarray = None
    waypoint_rays: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
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
    step = 2  # every other pixel: ~2 mm spacing at 0.8 m is plenty for a centroid
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

    # Finger line from the two tips lifted at the TCP's depth (the tips are beside the TCP).
    tips_uv = grasp_uv[[3, 4]]
    if np.linalg.norm(tips_uv[0] - tips_uv[1]) < params.min_finger_line_px:
        raise BackprojectionError('grasp fingertips coincide in the image: no finger line')
    tcp_depth = transform_points(invert_transform(T_base_camera), position[None])[0, 2]
    tips = transform_points(T_base_camera,
                            backproject_pixels(tips_uv, np.repeat(tcp_depth, 2), K))
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


def target_below(goal_uv, depth_m, K, T_base_camera, params=None):
    """Return (point (3,), found) of the first object surface below the goal pixel.

    Scans image rows downward from ``goal_uv`` (world up is image up: the camera has no
    roll) in a 5-pixel-wide strip; the first base-frame point higher than
    ``table_z + min_object_height`` is the target's visible top. ``found`` is False when
    the scan meets no object (the goal's own surface point is returned then).
    """
    params = params or BackprojectionParams()
    h, w = depth_m.shape
    u = int(round(goal_uv[0]))
    v0 = int(round(goal_uv[1]))
    rows = np.arange(max(v0, 0), min(v0 + params.target_scan_px, h))
    cols = np.arange(max(u - 2, 0), min(u + 3, w))
    if len(rows) and len(cols):
        vv, uu = np.meshgrid(rows, cols, indexing='ij')
        d = depth_m[vv, uu]
        valid = np.isfinite(d) & (d > 0)
        if np.any(valid):
            uv = np.stack([uu[valid], vv[valid]], axis=1).astype(float)
            cam = backproject_pixels(uv, d[valid], K)
            # Heights only (one row of the transform), full points for the chosen few.
            z = cam @ T_base_camera[2, :3] + T_base_camera[2, 3]
            high = z > params.table_z + params.min_object_height
            if np.any(high):
                first_row = uv[high, 1].min()
                sel = high & (uv[:, 1] <= first_row + 2)
                return np.median(transform_points(T_base_camera, cam[sel]), axis=0), True
    pts_cam, _ = lift_pixels(np.asarray(goal_uv, float)[None], depth_m, K, params.depth_window,
                             'goal waypoint')
    return transform_points(T_base_camera, pts_cam)[0], False


def lift_keypoints(grasp_uv, waypoints_uv, depth_m, K, T_base_camera, params=None):
    """Return a GraspTarget: the top-down grasp and the waypoints' surface points (base frame).

    Raises BackprojectionError naming the first point that cannot be lifted.
    """
    params = params or BackprojectionParams()
    depth_m = np.asarray(depth_m, dtype=float)
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
    else:
        waypoints = np.zeros((0, 3))
        target = None
        rays = np.zeros((0, 6))
    return GraspTarget(T_base_tcp=T, width=width, surface_point=surface, waypoints=waypoints,
                       target_point=target, waypoint_rays=rays, keypoints_depth=depths)
