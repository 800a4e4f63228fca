"""The MuJoCo tabletop world: objects at rest, camera conventions, robot commands."""

import numpy as np
import pytest

from bopask_gen.core.camera import depth_to_points, intrinsics_from_fovy, project_points
from bopask_gen.core.transforms import invert_transform, transform_points
from bopask_gen.sim.ik import PandaIK
from bopask_gen.sim.robot import HOME_Q
from bopask_gen.sim.world import look_at_optical, World, WorldError


@pytest.fixture(scope='module')
def world():
    w = World(obj_ids=[4, 8, 14, 21], seed=3)
    yield w
    w.close()


def test_objects_rest_on_the_table(world):
    assert world.object_speeds().max() < 0.01
    for obj in world.objects:
        T = world.object_pose(obj.index)
        lowest = transform_points(T, obj.mesh.vertices)[:, 2].min()
        assert -0.004 < lowest < 0.004, obj.name  # resting on the table top (z = 0)
        base = world.T_world_base[:2, 3]
        assert 0.25 < np.linalg.norm(T[:2, 3] - base) < 0.75, 'object out of reach'


def test_intrinsics_and_optical_frame(world):
    assert world.K == pytest.approx(intrinsics_from_fovy(58.0, 640, 480))
    seg = world.render_segmentation()
    T_cw = invert_transform(world.T_world_camera)
    for obj in world.objects:
        if (seg == obj.index).sum() < 200:
            continue
        # The visible pixels' centroid back-projects near the object: check the projected
        # centre lands inside the object's silhouette (fails for a flipped y or z axis).
        centre = transform_points(T_cw @ world.object_pose(obj.index), np.zeros((1, 3)))
        u, v = np.round(project_points(centre, world.K)[0]).astype(int)
        full = world.render_object_mask(obj.index)
        assert full[v, u], obj.name


def test_look_at_points_the_optical_axis_at_the_target(world):
    T = look_at_optical([0.8, 0.3, 0.9], [0.0, 0.0, 0.0])
    assert T[:3, 2] == pytest.approx(-np.array([0.8, 0.3, 0.9]) / np.linalg.norm([0.8, 0.3, 0.9]))
    assert T[2, 0] == pytest.approx(0.0)  # no roll: image x stays horizontal
    assert T[2, 1] < 0  # image y (down) points downward in the world
    world.set_camera_pose(T)
    assert world.T_world_camera == pytest.approx(T, abs=1e-9)
    with pytest.raises(ValueError, match='parallel'):
        look_at_optical([0, 0, 1], [0, 0, 0])


def test_depth_is_metric_along_the_optical_axis(world):
    # Table pixels back-projected with K, depth and T_world_camera land on the table top
    # (z = 0): checks the depth scale, the intrinsics and the optical-frame conversion.
    world.look_at([0.6, 0.3, 0.8], [0.0, 0.0, 0.0])
    depth = world.render_depth()
    seg = world.render_segmentation()
    table = (seg < 0) & (depth > 0)
    points, _ = depth_to_points(depth, world.K, mask=table, stride=4)
    z = transform_points(world.T_world_camera, points)[:, 2]
    on_table = np.abs(z) < 0.002
    assert on_table.mean() > 0.5  # the rest is robot, legs and floor
    assert np.median(np.abs(z[on_table])) < 1e-4
    world.randomize_camera()


def test_arm_and_gripper_commands():
    w = World(obj_ids=[21], seed=0, camera=False)
    target = HOME_Q + np.array([0.3, 0.2, -0.2, 0.3, 0.2, -0.2, 0.3])
    err = w.execute_joint_path(target[None], max_speed=1.0)
    assert err < 0.01
    assert w.arm_joint_positions() == pytest.approx(target, abs=0.01)
    w.set_gripper_opening(0.03)
    w.step(int(1.0 / w.dt))
    assert w.gripper_opening() == pytest.approx(0.03, abs=0.002)
    w.set_gripper_opening(1.0)  # clipped to the hand's 8 cm
    w.step(int(1.0 / w.dt))
    assert w.gripper_opening() == pytest.approx(0.08, abs=0.002)
    # The TCP reported by the world agrees with IK's forward kinematics.
    ik = PandaIK(w.T_world_base)
    assert ik.forward(w.arm_joint_positions())[:3, 3] == pytest.approx(w.tcp_pose()[:3, 3],
                                                                       abs=2e-3)


def test_bad_commands_and_ids_are_refused():
    w = World(obj_ids=[21], seed=0, camera=False)
    with pytest.raises(ValueError, match='7 finite'):
        w.set_arm_targets([0.0] * 6)
    with pytest.raises(ValueError, match='finite'):
        w.set_gripper_opening(float('nan'))
    with pytest.raises(WorldError, match='no rendering'):
        w.render_rgb()
    with pytest.raises(WorldError, match='1..21'):
        World(obj_ids=[22], camera=False)
    with pytest.raises(WorldError, match='distinct'):
        World(obj_ids=[3, 3], camera=False)
