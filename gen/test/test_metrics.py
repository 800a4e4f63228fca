"""BOP-ASK metrics on hand-built cases whose values were worked out by hand."""

import itertools

import numpy as np
import pytest

from bopask_gen.core.camera import intrinsics_matrix, project_points
from bopask_gen.evaluation import metrics

SQUARE = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], float)
# 8 "projected corners" whose hull is the 100x100 square (top face above the bottom one).
CUBOID_PX = np.vstack([SQUARE, SQUARE])
UNIT_CUBE = np.array(list(itertools.product([0, 1], repeat=3)), float)
GRASP = np.array([[100, 100], [90, 80], [110, 80], [90, 100], [110, 100]], float)  # d = 20


def test_pose_iou_2d_perfect_and_shifted():
    assert metrics.pose_iou_2d(CUBOID_PX, CUBOID_PX) == pytest.approx(1.0)
    # 50 px right: overlap 50x100 = 5000, union 15000.
    assert metrics.pose_iou_2d(CUBOID_PX + [50, 0], CUBOID_PX) == pytest.approx(1 / 3)
    # 25 px right and down: overlap 75x75 = 5625, union 20000 - 5625.
    assert metrics.pose_iou_2d(CUBOID_PX + [25, 25], CUBOID_PX) == pytest.approx(5625 / 14375)
    # Half-size square inside: 2500 / 10000.
    assert metrics.pose_iou_2d(CUBOID_PX * 0.5 + 25, CUBOID_PX) == pytest.approx(0.25)
    assert metrics.pose_iou_2d(CUBOID_PX + [200, 0], CUBOID_PX) == 0.0
    assert metrics.pose_iou_2d(np.tile([[50.0, 50.0]], (8, 1)), CUBOID_PX) == 0.0  # a point


def test_convex_hull_iou_3d_of_unit_cubes():
    assert metrics.convex_hull_iou_3d(UNIT_CUBE, UNIT_CUBE) == pytest.approx(1.0)
    assert metrics.convex_hull_iou_3d(UNIT_CUBE + [0.5, 0, 0], UNIT_CUBE) == pytest.approx(1 / 3)
    # Diagonal shift: overlap 0.5 x 0.5 x 1 = 0.25, union 1.75.
    assert metrics.convex_hull_iou_3d(UNIT_CUBE + [0.5, 0.5, 0], UNIT_CUBE) == \
        pytest.approx(1 / 7)
    assert metrics.convex_hull_iou_3d(UNIT_CUBE * 0.5, UNIT_CUBE) == pytest.approx(0.125)
    assert metrics.convex_hull_iou_3d(UNIT_CUBE + [2, 0, 0], UNIT_CUBE) == 0.0
    assert metrics.convex_hull_iou_3d(UNIT_CUBE * [1, 1, 0], UNIT_CUBE) == 0.0  # flat


def test_pose_iou_3d_lifts_with_the_true_corner_depths():
    K = intrinsics_matrix(500.0, 500.0, 320.0, 240.0)
    # A 10 cm cube, x, y in [-5, 5] cm, depth 1.0-1.1 m.
    box = np.array(list(itertools.product([-0.05, 0.05], [-0.05, 0.05], [1.0, 1.1])))
    px = project_points(box, K)
    np.testing.assert_allclose(metrics.lift_corners(px, box, K), box, atol=1e-12)
    assert metrics.pose_iou_3d(px, box, K) == pytest.approx(1.0)
    # 25 px to the right: a corner at depth z moves by 25 z / 500 = 0.05 z in x, a shear
    # that keeps the volume (0.001 m^3). Overlap = int_1.0^1.1 (0.1 - 0.05 z) * 0.1 dz
    # = 0.1 * (0.01 - 0.05 * (1.21 - 1) / 2) = 0.000475; IoU = 0.000475 / (0.002 - 0.000475).
    assert metrics.pose_iou_3d(px + [25, 0], box, K) == pytest.approx(0.000475 / 0.001525)
    with pytest.raises(ValueError, match='8 true'):
        metrics.lift_corners(px[:5], box, K)


def test_grasp_nce_perfect_mirrored_shifted_clipped():
    assert metrics.grasp_nce(GRASP, GRASP) == 0.0
    mirrored = GRASP[[0, 2, 1, 4, 3]]
    assert metrics.grasp_nce(mirrored, GRASP) == 0.0  # left/right swapped is as good
    assert metrics.grasp_nce(GRASP + [10, 0], GRASP) == pytest.approx(0.5)  # 10 / 20
    assert metrics.grasp_nce(mirrored + [0, 10], GRASP) == pytest.approx(0.5)
    off_centre = GRASP.copy()
    off_centre[0] += [0, 20]
    assert metrics.grasp_nce(off_centre, GRASP) == pytest.approx(20 / 5 / 20)
    assert metrics.grasp_nce(GRASP + [1000, 0], GRASP) == metrics.NCE_CLIP  # 50 -> 10
    with pytest.raises(ValueError, match='5 keypoints'):
        metrics.grasp_nce(GRASP[:4], GRASP)
    flat = GRASP.copy()
    flat[2] = flat[1]
    with pytest.raises(ValueError, match='coincide'):
        metrics.grasp_nce(GRASP, flat)


def test_path_resampling_and_distance():
    np.testing.assert_allclose(metrics.resample_path([[0, 0], [10, 0], [10, 10]], 3),
                               [[0, 0], [10, 0], [10, 10]])
    gt = [[0, 0], [100, 0]]
    assert metrics.path_distance(gt, gt) == 0.0
    assert metrics.path_distance([[0, 10], [100, 10]], gt) == pytest.approx(10.0)
    assert metrics.path_distance([[0, 0], [50, 0], [50, 0], [100, 0]], gt) == \
        pytest.approx(0.0, abs=1e-9)  # extra and repeated vertices on the same line
    # Perpendicular path of the same length: sample s is at (0, s) vs (s, 0): mean 50*sqrt2.
    assert metrics.path_distance([[0, 0], [0, 100]], gt) == pytest.approx(50 * np.sqrt(2))
    assert metrics.path_distance([[30, 40]], [[0, 0]]) == pytest.approx(50.0)  # one point


def _masks():
    a = np.zeros((20, 30), bool)
    a[5:15, 0:5] = True
    b = np.zeros_like(a)
    b[5:15, 25:30] = True
    c = np.zeros_like(a)
    c[5:15, 12:18] = True
    return a, b, c


def test_trajectory_success_cases():
    a, b, c = _masks()
    through_c = [[2, 10], [15, 10], [27, 10]]
    around_c = [[2, 10], [15, 2], [27, 10]]
    assert not metrics.trajectory_success(through_c, a, b, [c])
    assert metrics.trajectory_success(around_c, a, b, [c])
    assert metrics.trajectory_success([[2, 10], [27, 10]], a, b, [c])  # no interior waypoint
    assert not metrics.trajectory_success([[8, 10], [15, 2], [27, 10]], a, b, [c])  # start off A
    assert not metrics.trajectory_success([[2, 10], [15, 2], [20, 10]], a, b, [c])  # end off B
    assert not metrics.trajectory_success([[2, 10]], a, b, [c])  # one point is no path
    # Tolerance: a start 2 px right of A passes with 3 px, and a waypoint 1 px inside C's
    # border is not counted when C shrinks by 3 px.
    assert metrics.trajectory_success([[6, 10], [15, 2], [27, 10]], a, b, [c], tolerance_px=3)
    assert metrics.trajectory_success([[2, 10], [12, 10], [27, 10]], a, b, [c], tolerance_px=3)
    assert not metrics.trajectory_success([[2, 10], [12, 10], [27, 10]], a, b, [c])


def test_points_in_mask_outside_image_and_blockers_hit():
    a, b, c = _masks()
    assert not metrics.points_in_mask([[-5, 10], [100, 10]], a, tolerance_px=50).any()
    hits = metrics.blockers_hit([[2, 10], [15, 10]], [a, b, c])
    assert hits.tolist() == [True, False, True]
    assert metrics.blockers_hit(np.zeros((0, 2)), [a, b]).tolist() == [False, False]


def test_yes_no():
    assert metrics.yes_no_correct(True, True) and not metrics.yes_no_correct(False, True)
