"""Back-projection core on a ray-cast scene: a box on a table seen by the configured camera."""

import numpy as np
import pytest

from bopask_gen.core import gripper
from bopask_gen.core.camera import intrinsics_from_fovy, project_points
from bopask_gen.core.transforms import (
    invert_transform,
    make_transform,
    transform_from_xyz_quat_xyzw,
    transform_points,
)
from bopask_ros import ros_common as rc
from bopask_ros.backprojection import (
    BackprojectionError,
    BackprojectionParams,
    lift_keypoints,
    near_tip_height,
    target_below,
    viewing_rays_base,
)

W, H = 640, 480
K = intrinsics_from_fovy(58.0, W, H)
BOX_LO = np.array([0.475, 0.025, 0.0])
BOX_HI = np.array([0.525, 0.075, 0.10])


@pytest.fixture(scope='module')
def T_bc():
    p = rc.load_node_parameters(rc.config_path('extrinsics.yaml'), 'backprojection_node')
    return transform_from_xyz_quat_xyzw(p['extrinsic.translation'],
                                        p['extrinsic.rotation_xyzw'])


def render_depth(T_bc, boxes=((BOX_LO, BOX_HI),)):
    """Depth along the optical axis of a table z=0 with axis-aligned boxes (slab method)."""
    v, u = np.mgrid[0:H, 0:W]
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1],
                         np.ones_like(u, dtype=float)], axis=-1).reshape(-1, 3)
    d = rays_cam @ T_bc[:3, :3].T
    o = T_bc[:3, 3]
    with np.errstate(divide='ignore', invalid='ignore'):
        t = -o[2] / d[:, 2]
        for lo, hi in boxes:
            t1, t2 = (np.asarray(lo) - o) / d, (np.asarray(hi) - o) / d
            t_near = np.max(np.minimum(t1, t2), axis=1)
            t_far = np.min(np.maximum(t1, t2), axis=1)
            hit_box = (t_near <= t_far) & (t_near > 0) & (t_near < t)
            t = np.where(hit_box, t_near, t)
    t[t <= 0] = np.nan
    # t scales the (x, y, 1) camera ray, so t is the depth along the optical axis.
    return t.reshape(H, W)


def box_grasp_pixels(T_bc, depth_below_top=BackprojectionParams.grasp_depth, width=0.06,
                     yaw=np.pi / 2, offset=(0.0, 0.0)):
    y = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    centre = (BOX_LO + BOX_HI) / 2 + [offset[0], offset[1], 0.0]
    T = make_transform(np.stack([np.cross(y, z), y, z], axis=1),
                       [centre[0], centre[1], BOX_HI[2] - depth_below_top])
    kp = gripper.grasp_keypoints(T, width)
    return project_points(transform_points(invert_transform(T_bc), kp), K), T


def grasp_beside_the_box(T_bc):
    """Keypoints of a top-down grasp of something on the table away from the box."""
    fy, fz = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    T = make_transform(np.stack([np.cross(fy, fz), fy, fz], axis=1), [0.4, -0.15, 0.02])
    return project_points(transform_points(invert_transform(T_bc),
                                           gripper.grasp_keypoints(T, 0.05)), K)


def test_top_down_grasp_on_a_box(T_bc):
    depth = render_depth(T_bc)
    uv, T_true = box_grasp_pixels(T_bc)
    waypoints = project_points(transform_points(invert_transform(T_bc),
                                                [[0.5, 0.05, 0.15], [0.6, -0.1, 0.15]]), K)
    target = lift_keypoints(uv, waypoints, depth, K, T_bc, BackprojectionParams())
    # The TCP on the centre pixel's ray, grasp_depth below the top face.
    np.testing.assert_allclose(target.position, T_true[:3, 3], atol=0.004)
    np.testing.assert_allclose(target.approach, [0.0, 0.0, -1.0], atol=1e-9)
    assert abs(target.T_base_tcp[:3, 1] @ [0.0, 1.0, 0.0]) > 0.995   # finger line along y
    assert target.width == pytest.approx(0.06, abs=0.003)
    assert target.waypoints.shape == (2, 3) and target.waypoint_rays.shape == (2, 6)
    # Each ray starts at the camera and passes through its waypoint's surface point.
    for ray, p in zip(target.waypoint_rays, target.waypoints):
        np.testing.assert_allclose(ray[:3], T_bc[:3, 3])
        along = p - ray[:3]
        np.testing.assert_allclose(along / np.linalg.norm(along), ray[3:], atol=1e-6)


def test_off_centre_grasp_stays_where_the_keypoint_points(T_bc):
    # A grasp 6 mm off the top face's centre, across the finger line: the TCP follows the
    # centre keypoint's ray (a top-face centroid would pull it to the middle of the box).
    depth = render_depth(T_bc)
    uv, T_true = box_grasp_pixels(T_bc, offset=(0.006, 0.0))
    target = lift_keypoints(uv, uv[:2], depth, K, T_bc, BackprojectionParams())
    np.testing.assert_allclose(target.position, T_true[:3, 3], atol=0.004)
    # 2 cm off, on a 5 cm box: a 2 cm wide finger pad would hang over the edge; the TCP
    # moves in until the pads are pad_inset inside the face (x <= 0.5 + 0.025 - 0.015; the
    # sampled face stops a few millimetres short of the edges).
    uv, T_true = box_grasp_pixels(T_bc, offset=(0.02, 0.0))
    target = lift_keypoints(uv, uv[:2], depth, K, T_bc, BackprojectionParams())
    assert 0.499 <= target.position[0] <= 0.5105
    np.testing.assert_allclose(target.position[1:], T_true[1:3, 3], atol=0.004)


@pytest.mark.parametrize('yaw_deg', [0.0, 35.0, 60.0, 120.0])
def test_finger_line_yaw_is_exact_for_any_direction(T_bc, yaw_deg):
    # A finger line running along the image's vertical is where a constant-depth lift
    # would tilt it; the tips are lifted to the TCP's height instead.
    depth = render_depth(T_bc)
    uv, T_true = box_grasp_pixels(T_bc, yaw=np.deg2rad(yaw_deg), width=0.07)
    target = lift_keypoints(uv, uv[:2], depth, K, T_bc)
    assert abs(target.T_base_tcp[:3, 1] @ T_true[:3, 1]) > np.cos(np.deg2rad(1.5))
    assert target.width == pytest.approx(0.07, abs=0.004)


@pytest.mark.parametrize('tilt_deg', [30.0, -45.0, 60.0])
def test_tilted_grasp_approach_is_recovered(T_bc, tilt_deg):
    # The generator turns grasps about the closing line away from straight down; the finger
    # bases' pixels tell by how much. The TCP is in the box's mid-plane across the fingers.
    depth = render_depth(T_bc)
    y, down = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])
    t = np.deg2rad(tilt_deg)
    z = np.cos(t) * down + np.sin(t) * np.cross(y, down)
    centre = (BOX_LO + BOX_HI) / 2
    T_true = make_transform(np.stack([np.cross(y, z), y, z], axis=1),
                            [centre[0], centre[1] + 0.01 * np.sign(t), 0.07])
    uv = project_points(transform_points(invert_transform(T_bc),
                                         gripper.grasp_keypoints(T_true, 0.05)), K)
    target = lift_keypoints(uv, uv[:2], depth, K, T_bc)
    angle = np.degrees(np.arccos(np.clip(target.approach @ z, -1.0, 1.0)))
    assert angle < 3.0
    assert abs(target.T_base_tcp[:3, 1] @ y) > np.cos(np.deg2rad(2.0))
    np.testing.assert_allclose(target.position, T_true[:3, 3], atol=0.01)
    assert target.width == pytest.approx(0.05, abs=0.004)


TALL_LO, TALL_HI = np.array([0.47, 0.0, 0.0]), np.array([0.53, 0.10, 0.25])


def side_grasp_of_a_tall_box(T_bc, tilt_deg=-55.0):
    """(keypoint pixels, true TCP) of a grasp of a tall box's side, closing along the view.

    Like the generator's grasps of a bleach bottle's body: the approach turned sideways,
    the fingers on the faces the camera looks at and away from, the top 12 cm above.
    """
    y, down = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])
    t = np.deg2rad(tilt_deg)
    z = np.cos(t) * down + np.sin(t) * np.cross(y, down)
    T_true = make_transform(np.stack([np.cross(y, z), y, z], axis=1), [0.50, 0.08, 0.13])
    width = TALL_HI[0] - TALL_LO[0]
    uv = project_points(transform_points(invert_transform(T_bc),
                                         gripper.grasp_keypoints(T_true, width)), K)
    return uv, T_true


def test_tilted_grasp_of_a_tall_objects_side_is_inside_the_object(T_bc):
    # No top face near the grasp (the top is 12 cm up): the TCP is level with the fingertip
    # in front of the object, which the camera sees on the near face -- not on the near face
    # itself (the old lift: 4 cm short along the ray, the hand closed on nothing).
    depth = render_depth(T_bc, ((TALL_LO, TALL_HI),))
    uv, T_true = side_grasp_of_a_tall_box(T_bc)
    target = lift_keypoints(uv, uv[:2], depth, K, T_bc)
    np.testing.assert_allclose(target.position, T_true[:3, 3], atol=0.005)
    angle = np.degrees(np.arccos(np.clip(target.approach @ T_true[:3, 2], -1.0, 1.0)))
    assert angle < 5.0
    assert target.width == pytest.approx(0.06, abs=0.004)


def test_near_tip_seeing_the_table_is_not_used(T_bc):
    # A near fingertip whose pixel sees past the object (the table beside it) says nothing
    # about the TCP's height: None, and the top face's mid-plane is used instead.
    depth = render_depth(T_bc, ((TALL_LO, TALL_HI),))
    uv, T_true = side_grasp_of_a_tall_box(T_bc)
    table_uv = project_points(transform_points(invert_transform(T_bc),
                                               [[0.50, -0.08, 0.0]]), K)[0]
    rays = viewing_rays_base(np.vstack([uv[:1], table_uv]), K, T_bc)
    params = BackprojectionParams()
    # The centre's seen surface: where its ray meets the near face (x = 0.53).
    surface = T_bc[:3, 3] + rays[0] * (TALL_HI[0] - T_bc[0, 3]) / rays[0][0]
    assert near_tip_height(table_uv, rays[0], T_true[:3, 1], surface, depth, K, T_bc,
                           params) is None
    near_uv = uv[3]   # the left tip (+y = +x, toward the camera)
    assert near_tip_height(near_uv, rays[0], T_true[:3, 1], surface, depth, K, T_bc,
                           params) == pytest.approx(T_true[2, 3], abs=0.003)


def test_noisy_top_down_keypoints_stay_top_down(T_bc):
    depth = render_depth(T_bc)
    uv, _ = box_grasp_pixels(T_bc)
    noisy = uv + np.random.default_rng(0).normal(0.0, 0.7, uv.shape)
    target = lift_keypoints(noisy, uv[:2], depth, K, T_bc)
    np.testing.assert_allclose(target.approach, [0.0, 0.0, -1.0], atol=1e-9)


def test_a_taller_neighbour_is_not_the_grasped_top(T_bc):
    # A 20 cm block 1 cm beside the 10 cm box: its top is within top_radius of the grasp
    # but far above the surface the grasp centre sees, so it is another object.
    tall = (np.array([0.475, 0.085, 0.0]), np.array([0.525, 0.135, 0.20]))
    depth = render_depth(T_bc, ((BOX_LO, BOX_HI), tall))
    uv, T_true = box_grasp_pixels(T_bc)
    target = lift_keypoints(uv, uv[:2], depth, K, T_bc)
    np.testing.assert_allclose(target.position, T_true[:3, 3], atol=0.006)


def test_target_point_is_the_object_under_the_goal(T_bc):
    depth = render_depth(T_bc)
    goal = project_points(transform_points(invert_transform(T_bc), [[0.5, 0.05, 0.2]]), K)[0]
    point, found = target_below(goal, depth, K, T_bc)
    assert found
    np.testing.assert_allclose(point, [0.5, 0.05, BOX_HI[2]], atol=0.004)   # top centre


def test_no_valid_depth_is_refused(T_bc):
    depth = render_depth(T_bc)
    uv, _ = box_grasp_pixels(T_bc)
    u, v = np.round(uv[0]).astype(int)
    depth[v - 10:v + 11, u - 10:u + 11] = 0.0
    with pytest.raises(BackprojectionError, match='no valid depth'):
        lift_keypoints(uv, uv[:2], depth, K, T_bc)


def test_keypoint_outside_the_image_is_refused(T_bc):
    depth = render_depth(T_bc)
    uv, _ = box_grasp_pixels(T_bc)
    bad = uv.copy()
    bad[3] = [700.0, 10.0]
    with pytest.raises(BackprojectionError, match='outside the 640x480 image'):
        lift_keypoints(bad, uv[:2], depth, K, T_bc)
    with pytest.raises(BackprojectionError, match='waypoint point 1'):
        lift_keypoints(uv, [[10.0, 10.0], [-5.0, 3.0]], depth, K, T_bc)


def test_degenerate_finger_line_is_refused(T_bc):
    depth = render_depth(T_bc)
    uv, _ = box_grasp_pixels(T_bc)
    uv[4] = uv[3]
    with pytest.raises(BackprojectionError, match='fingertips coincide'):
        lift_keypoints(uv, uv[:2], depth, K, T_bc)
    with pytest.raises(BackprojectionError, match='5 keypoints'):
        lift_keypoints(uv[:4], uv[:2], depth, K, T_bc)


def disc_cloud(centre, radius, z=0.05, spacing=0.005):
    """Points filling a horizontal disc (an object's footprint seen from above)."""
    g = np.arange(-radius, radius + 1e-9, spacing)
    xx, yy = np.meshgrid(g, g)
    keep = np.hypot(xx, yy) <= radius
    return np.stack([xx[keep] + centre[0], yy[keep] + centre[1],
                     np.full(keep.sum(), z)], axis=1)


def footprint_gap(spot, start, held_r, centre, r):
    """Gap between a disc of radius held_r moved with the grasp to ``spot`` and another."""
    return np.linalg.norm(np.asarray(spot)[:2] - centre) - held_r - r


def test_place_spot_is_next_to_the_target_footprint():
    from bopask_ros.backprojection import free_place
    params = BackprojectionParams(place_gap=0.02, place_max_gap=0.06)
    target, start = np.array([0.6, 0.0, 0.1]), np.array([0.3, 0.0])
    big = disc_cloud(target, 0.08)           # a wide target (a bowl): its footprint counts
    mover = disc_cloud(start, 0.03)          # the object being moved: it goes along
    spot = free_place(target, start, np.vstack([big, mover]), params)
    gap = footprint_gap(spot, start, 0.03, target[:2], 0.08)
    assert 0.015 <= gap <= 0.045                      # place_gap, to a cell or two
    assert abs(spot[1]) < 0.011 and spot[0] < 0.6     # on the start's side
    # Something stands there already: another side, still next to the target. (Objects
    # closer than about two cells share a footprint label, so the blocker keeps 4 cm away.)
    blocker_xy = [target[0] - 0.14, 0.0]
    blocker = disc_cloud(blocker_xy, 0.02)
    spot2 = free_place(target, start, np.vstack([big, mover, blocker]), params)
    # place_max_gap along the search direction; cells add up to two 1.5 cm cells.
    assert 0.015 <= footprint_gap(spot2, start, 0.03, target[:2], 0.08) <= 0.06 + 0.03
    assert footprint_gap(spot2, start, 0.03, blocker_xy, 0.02) >= 0.015
    # Crowded all around: refused.
    crowd = np.vstack([disc_cloud([0.6 + 0.16 * np.cos(a), 0.16 * np.sin(a)], 0.04)
                       for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)])
    assert free_place(target, start, np.vstack([big, mover, crowd]), params) is None


def test_place_is_next_to_the_target_not_to_the_cluster_it_touches():
    from bopask_ros.backprojection import free_place
    params = BackprojectionParams()
    target, start = np.array([0.45, 0.25, 0.035]), np.array([0.45, -0.2])
    small = disc_cloud(target, 0.03, z=0.035)
    # A long object touching the target, lying toward the start: one footprint group.
    bar = np.vstack([disc_cloud([0.45, y], 0.025, z=0.03) for y in np.arange(0.0, 0.23, 0.01)])
    mover = disc_cloud(start, 0.03)
    spot = free_place(target, start, np.vstack([small, bar, mover]), params)
    # Beside the target itself; sliding toward the start would end past the bar (20+ cm).
    assert footprint_gap(spot, start, 0.03, target[:2], 0.03) <= params.place_max_gap + 0.03
    assert footprint_gap(spot, start, 0.03, [0.45, 0.1], 0.025) >= 0.015   # clear of the bar


def test_place_beyond_the_arms_reach_is_not_used():
    from bopask_ros.backprojection import free_place
    target, start = np.array([0.64, 0.0, 0.05]), np.array([0.35, 0.0])
    # Crowded on the near half: only the far side (x > 0.7 m) is free.
    crowd = np.vstack([disc_cloud([0.64 + 0.14 * np.cos(a), 0.14 * np.sin(a)], 0.035)
                       for a in np.deg2rad([90, 120, 150, 180, 210, 240, 270])])
    cloud = np.vstack([disc_cloud(target, 0.04), crowd, disc_cloud(start, 0.03)])
    far = free_place(target, start, cloud, BackprojectionParams(place_max_reach=1.0))
    assert far is not None and far[0] > 0.70
    assert free_place(target, start, cloud, BackprojectionParams()) is None   # 0.70 m
    # Nor next to the robot's base: a target 0.36 m out, crowded on every side but the
    # robot's, has no spot.
    near, start = np.array([0.36, 0.0, 0.05]), np.array([0.40, 0.3])
    wall = np.vstack([disc_cloud([0.36 + 0.14 * np.cos(a), 0.14 * np.sin(a)], 0.035)
                      for a in np.deg2rad(np.arange(-120, 121, 30))])
    cloud = np.vstack([disc_cloud(near, 0.04), wall, disc_cloud(start, 0.03)])
    assert free_place(near, start, cloud, BackprojectionParams()) is None
    inside = free_place(near, start, cloud, BackprojectionParams(place_min_reach=0.0))
    assert np.hypot(*inside[:2]) < 0.32


def test_place_keeps_the_open_hand_clear_of_a_tall_target():
    from bopask_ros.backprojection import free_place, hand_clearance_cells, height_map
    params = BackprojectionParams(place_gap=0.02, place_max_gap=0.06)
    target, start = np.array([0.6, 0.0, 0.30]), np.array([0.3, 0.0])
    tall = disc_cloud(target, 0.05, z=0.30)
    mover = disc_cloud(start, 0.025, z=0.05)
    cloud = np.vstack([tall, mover])
    # Top-down, fingers closing along x: the 20 cm palm points at the target.
    fy, fz = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])
    T = make_transform(np.stack([np.cross(fy, fz), fy, fz], axis=1), [0.3, 0.0, 0.03])
    beside = free_place(target, start, cloud, params)
    assert beside[0] < 0.6 and abs(beside[1]) < 0.011      # straight toward the start
    spot = free_place(target, start, cloud, params, hand=(T, 0.05))
    # The hand there stays clear of the target's top: no hand cell over it.
    heights, origin = height_map(tall, params.place_cell)
    cells, _ = hand_clearance_cells(make_transform(T[:3, :3], spot), 0.05, origin,
                                    params.place_cell)
    cells = cells + np.floor((spot[:2] - origin) / params.place_cell).astype(int)
    ok = np.all((cells >= 0) & (cells < heights.shape), axis=1)
    assert not np.any(np.isfinite(heights[cells[ok, 0], cells[ok, 1]]))
    assert footprint_gap(spot, start, 0.025, target[:2], 0.05) <= 0.06 + 0.03


def test_target_crowded_on_all_sides_is_refused(T_bc):
    depth = render_depth(T_bc)
    uv = grasp_beside_the_box(T_bc)   # the box is the target
    goal = project_points(transform_points(invert_transform(T_bc), [[0.5, 0.05, 0.2]]), K)
    params = BackprojectionParams(place_max_gap=0.0)   # no spot is close enough
    with pytest.raises(BackprojectionError, match='no free spot'):
        lift_keypoints(uv, np.vstack([uv[:1], goal]), depth, K, T_bc, params)


def test_warm_up_lifts_its_made_up_scene():
    from bopask_ros.backprojection import warm_up
    assert warm_up() > 0.0          # grasp, waypoints and a free place: nothing refused


def test_cross3_is_the_cross_product():
    from bopask_ros.backprojection import cross3
    rng = np.random.default_rng(0)
    for a, b in zip(rng.normal(size=(20, 3)), rng.normal(size=(20, 3))):
        np.testing.assert_allclose(cross3(a, b), np.cross(a, b), atol=1e-12)
    np.testing.assert_allclose(cross3([0.0, 1.0, 0.0], [0.0, 0.0, -1.0]), [-1.0, 0.0, 0.0])


def test_place_out_of_reach_for_the_grasp_orientation_is_not_used():
    from bopask_ros.backprojection import free_place, place_reachable
    params = BackprojectionParams()
    # Seed 2's mustard bottle, held 0.158 m up by a hand tilted 28 degrees toward the robot
    # (its wrist 10 cm farther out than the TCP), to go next to the 0.24 m pitcher. The spot
    # chosen with the horizontal limit alone (0.67 m out) put the hand out of the arm's
    # reach once lifted to carry over the pitcher: the executor refused it.
    T = np.array([[0.8772, 0.1482, -0.4567, 0.3678], [0.1314, -0.989, -0.0684, 0.0195],
                  [-0.4617, 0.0, -0.887, 0.1583], [0.0, 0.0, 0.0, 1.0]])
    assert np.hypot(0.563, 0.364) < params.place_max_reach
    assert not place_reachable([0.563, 0.364], T, params)
    target, start = np.array([0.606, 0.19, 0.241]), T[:2, 3]
    cloud = np.vstack([disc_cloud(target, 0.06, z=0.241), disc_cloud(start, 0.03, z=0.19)])
    # The open hand leans over the pitcher on its near side; the other sides are beyond
    # the arm's reach with this hand: no spot (a clean refusal), where the horizontal limit
    # alone gave one.
    unlimited = BackprojectionParams(arm_wrist_reach=10.0)
    far = free_place(target, start, cloud, unlimited, hand=(T, 0.07))
    assert far is not None and not place_reachable(far[:2], T, params)
    assert free_place(target, start, cloud, params, hand=(T, 0.07)) is None
    # Seed 0's potted meat can, grasped 0.644 m out tilted 58 degrees toward the robot: out
    # of reach where it stands already (the executor refuses the grasp itself).
    z = np.array([-0.828, 0.167, -0.535])
    x = np.cross([0.0, 0.0, 1.0], z) / np.linalg.norm(np.cross([0.0, 0.0, 1.0], z))
    far_grasp = make_transform(np.stack([x, np.cross(z, x), z], axis=1), [0.644, -0.029, 0.052])
    assert not place_reachable([0.644, -0.029], far_grasp, params)
    # A top-down hand is within reach over the whole usable ring at table height.
    fy, fz = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    down = make_transform(np.stack([np.cross(fy, fz), fy, fz], axis=1), [0.4, 0.0, 0.05])
    a = np.linspace(-np.pi / 2, np.pi / 2, 19)
    for r in (params.place_min_reach, 0.5, params.place_max_reach):
        assert np.all(place_reachable(np.stack([r * np.cos(a), r * np.sin(a)], 1), down, params))


def test_no_place_in_the_arms_reach_is_refused_saying_so(T_bc):
    depth = render_depth(T_bc)
    uv = grasp_beside_the_box(T_bc)   # the box is the target
    goal = project_points(transform_points(invert_transform(T_bc), [[0.5, 0.05, 0.2]]), K)
    waypoints = np.vstack([uv[:1], goal])
    assert lift_keypoints(uv, waypoints, depth, K, T_bc).place_point is not None
    short = BackprojectionParams(arm_wrist_reach=0.3)   # an arm reaching nowhere there
    with pytest.raises(BackprojectionError, match=r'no free spot .* to put the object down: '
                                                  r'with this grasp \(tilted 0 deg\) the free '
                                                  r"spots put the wrist beyond the arm's reach"):
        lift_keypoints(uv, waypoints, depth, K, T_bc, short)


def test_place_reach_defaults_are_the_arms():
    from bopask_gen.sim.ik import PandaIK
    reach, params = PandaIK().reach, BackprojectionParams()
    np.testing.assert_allclose(params.arm_shoulder, reach.shoulder, atol=1e-3)
    assert params.arm_wrist_reach == pytest.approx(reach.wrist, abs=1e-3)
    assert params.arm_flange == pytest.approx(reach.flange, abs=1e-3)
    assert params.arm_wrist_offset == pytest.approx(reach.offset, abs=1e-3)
