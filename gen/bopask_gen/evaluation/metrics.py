"""The BOP-ASK metrics (SPEC.md section 3) as pure functions over numpy arrays.

Every function scores one answer that was already parsed into pixels; an answer that could
not be parsed is scored by the caller with the failure values below (``FAILED_*``).

- pose: IoU of the convex hulls of the 8 projected corners (``pose_iou_2d``) and, where the
  ground-truth cuboid is known in 3D, IoU of the lifted prediction with the true cuboid
  (``pose_iou_3d``). Lifting: a 2D answer has no depth, so predicted corner ``i`` is
  back-projected along its pixel ray to the camera depth (z) of ground-truth corner ``i``
  (the corner order is part of the answer format). A perfect answer gives exactly the true
  cuboid; a shifted answer gives a shifted solid at the true depths. The IoU is that of the
  convex hulls of the two 8-point sets (the lifted prediction is in general no box).
- grasp: NCE = mean over the 5 keypoints of ||p - p_hat|| / d, d = distance between the
  ground-truth finger bases; the prediction with left and right swapped is scored too and
  the lower value kept; clipped at ``NCE_CLIP``.
- trajectory: success = first point in A's mask, last point in B's mask, no interior
  waypoint in another object's mask (masks are boolean images; a tolerance in pixels grows
  A's and B's masks and shrinks the others', so that rounding at a border does not decide);
  distance = mean distance between the two paths resampled to ``PATH_SAMPLES`` points at
  equal arc length.
- rearrangement: which ground-truth blockers are hit by a predicted point (inside the
  blocker's mask, same tolerance); recall is summed over blockers by the caller.
- spatial / depth: a Yes/No answer equals the ground truth.
"""

import cv2
import numpy as np
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection, QhullError

from bopask_gen.core.camera import backproject_pixels

NCE_CLIP = 10.0
'''Upper bound of the grasp NCE (the paper clips there).'''
PATH_SAMPLES = 100
'''Points per path after equal-arc-length resampling for the trajectory distance.'''
FAILED_IOU = 0.0
FAILED_NCE = float('inf')
FAILED_DIST = float('inf')
MIRROR_ORDER = (0, 2, 1, 4, 3)
'''Grasp keypoint order with left and right swapped (centre, bases, tips).'''


def _as_points(points, dim):
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return np.zeros((0, dim))
    if pts.ndim != 2 or pts.shape[1] != dim:
        raise ValueError(f'expected an (N, {dim}) array of points, got shape {pts.shape}')
    if not np.all(np.isfinite(pts)):
        raise ValueError('points must be finite')
    return pts


def polygon_area(points):
    """Area of the convex hull of (N, 2) points (0 for fewer than 3 or collinear points)."""
    pts = _as_points(points, 2)
    if len(pts) < 3:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(pts.astype(np.float32))))


def convex_hull_iou_2d(pred, gt):
    """IoU of the convex hulls of two 2D point sets (cv2 convex-polygon clipping)."""
    pred, gt = _as_points(pred, 2), _as_points(gt, 2)
    area_p, area_g = polygon_area(pred), polygon_area(gt)
    if area_p <= 0.0 or area_g <= 0.0:
        return 0.0
    hull_p = cv2.convexHull(pred.astype(np.float32))
    hull_g = cv2.convexHull(gt.astype(np.float32))
    inter, _ = cv2.intersectConvexConvex(hull_p, hull_g, handleNested=True)
    # cv2 may return a negative area when it does not converge; clamp to what is possible.
    inter = float(np.clip(inter, 0.0, min(area_p, area_g)))
    return inter / (area_p + area_g - inter)


def pose_iou_2d(pred_px, gt_px):
    """Pose IoU in the image: convex hulls of the 8 predicted and true projected corners."""
    return convex_hull_iou_2d(pred_px, gt_px)


def _hull(points):
    try:
        return ConvexHull(points)
    except (QhullError, ValueError):
        return None  # flat or degenerate: no volume


def convex_hull_iou_3d(pred, gt):
    """IoU of the convex hulls of two 3D point sets (scipy Qhull halfspace intersection)."""
    pred, gt = _as_points(pred, 3), _as_points(gt, 3)
    hull_p, hull_g = _hull(pred), _hull(gt)
    if hull_p is None or hull_g is None or hull_p.volume <= 0 or hull_g.volume <= 0:
        return 0.0
    halfspaces = np.vstack([hull_p.equations, hull_g.equations])  # A x + b <= 0 inside
    # A strictly interior point of the intersection: the Chebyshev centre (largest ball).
    normals, offsets = halfspaces[:, :3], halfspaces[:, 3]
    norms = np.linalg.norm(normals, axis=1, keepdims=True)
    res = linprog(
        c=[0.0, 0.0, 0.0, -1.0], A_ub=np.hstack([normals, norms]), b_ub=-offsets,
        bounds=[(None, None)] * 3 + [(0.0, None)], method='highs',
    )
    scale = max(float(np.ptp(np.vstack([pred, gt]), axis=0).max()), 1e-12)
    if not res.success or res.x[3] <= 1e-9 * scale:
        return 0.0  # disjoint or touching only
    try:
        inter = HalfspaceIntersection(halfspaces, res.x[:3])
        volume = ConvexHull(inter.intersections).volume
    except (QhullError, ValueError):
        return 0.0
    volume = min(volume, hull_p.volume, hull_g.volume)
    return float(volume / (hull_p.volume + hull_g.volume - volume))


def lift_corners(pred_px, gt_corners_cam, K):
    """Back-project predicted corner i to the camera depth of ground-truth corner i, (8, 3)."""
    pred_px = _as_points(pred_px, 2)
    gt_corners_cam = _as_points(gt_corners_cam, 3)
    if len(pred_px) != len(gt_corners_cam):
        raise ValueError(f'{len(pred_px)} predicted corners for {len(gt_corners_cam)} true ones')
    return backproject_pixels(pred_px, gt_corners_cam[:, 2], K)


def pose_iou_3d(pred_px, gt_corners_cam, K):
    """3D pose IoU: lifted predicted corners (see ``lift_corners``) vs the true cuboid."""
    return convex_hull_iou_3d(lift_corners(pred_px, gt_corners_cam, K), gt_corners_cam)


def grasp_nce(pred_px, gt_px, clip=NCE_CLIP):
    """Normalized coordinate error of a 5-keypoint grasp (lower is better).

    Mean over the 5 points of ||p - p_hat|| / d with d the distance between the true finger
    bases (keypoints 1 and 2); the left/right-mirrored prediction is scored as well and the
    lower value kept; the result is clipped at ``clip``. A grasp seen along its closing line
    (d = 0) cannot be normalized: ValueError.
    """
    pred, gt = _as_points(pred_px, 2), _as_points(gt_px, 2)
    if len(pred) != 5 or len(gt) != 5:
        raise ValueError(f'a grasp has 5 keypoints; got {len(pred)} predicted, {len(gt)} true')
    d = float(np.linalg.norm(gt[1] - gt[2]))
    if d <= 0.0:
        raise ValueError('true finger bases coincide in the image: NCE is undefined')
    direct = np.linalg.norm(pred - gt, axis=1).mean() / d
    mirrored = np.linalg.norm(pred[list(MIRROR_ORDER)] - gt, axis=1).mean() / d
    return float(min(direct, mirrored, clip))


def resample_path(points, n=PATH_SAMPLES):
    """Return ``n`` points spaced at equal arc length along a polyline (N >= 1 points)."""
    pts = _as_points(points, 2)
    if len(pts) == 0:
        raise ValueError('an empty path cannot be resampled')
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] <= 0.0:
        return np.repeat(pts[:1], n, axis=0)
    keep = np.concatenate([[True], seg > 0])  # np.interp needs increasing abscissae
    s = np.linspace(0.0, arc[-1], n)
    return np.stack([np.interp(s, arc[keep], pts[keep, k]) for k in range(2)], axis=1)


def path_distance(pred_px, gt_px, n=PATH_SAMPLES):
    """Mean pixel distance between two paths resampled to ``n`` equal-arc-length points."""
    return float(np.linalg.norm(resample_path(pred_px, n) - resample_path(gt_px, n),
                                axis=1).mean())


def mask_distance(mask):
    """Per-pixel distance (pixels) to the nearest pixel of a boolean mask (0 inside)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)


def points_in_mask(points_px, mask, tolerance_px=0.0):
    """Boolean (N,): each point's pixel is in ``mask`` or within ``tolerance_px`` of it.

    A negative tolerance shrinks the mask instead (the point must lie at least that deep
    inside). Points outside the image are never inside.
    """
    pts = _as_points(points_px, 2)
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    uv = np.round(pts).astype(int)
    inside_img = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    out = np.zeros(len(pts), dtype=bool)
    if not inside_img.any():
        return out
    u, v = uv[inside_img, 0], uv[inside_img, 1]
    if tolerance_px >= 0:
        out[inside_img] = mask_distance(mask)[v, u] <= tolerance_px
    else:
        depth_inside = mask_distance(~mask)  # distance to the nearest background pixel
        out[inside_img] = mask[v, u] & (depth_inside[v, u] > -tolerance_px)
    return out


def trajectory_success(pred_px, mask_a, mask_b, other_masks, tolerance_px=0.0):
    """True when a path goes from A's mask to B's without an interior waypoint on another object.

    A's and B's masks are grown, the others shrunk, by ``tolerance_px``.
    """
    pts = _as_points(pred_px, 2)
    if len(pts) < 2:
        return False
    if not points_in_mask(pts[:1], mask_a, tolerance_px)[0]:
        return False
    if not points_in_mask(pts[-1:], mask_b, tolerance_px)[0]:
        return False
    interior = pts[1:-1]
    if len(interior) == 0:
        return True
    return not any(points_in_mask(interior, m, -tolerance_px).any() for m in other_masks)


def blockers_hit(pred_px, blocker_masks, tolerance_px=0.0):
    """Boolean per ground-truth blocker: some predicted point lies in its mask."""
    pts = _as_points(pred_px, 2)
    if len(pts) == 0:
        return np.zeros(len(blocker_masks), dtype=bool)
    return np.array([points_in_mask(pts, m, tolerance_px).any() for m in blocker_masks],
                    dtype=bool)


def yes_no_correct(pred, gt):
    """True when a parsed Yes/No answer equals the ground truth."""
    return bool(pred) == bool(gt)
