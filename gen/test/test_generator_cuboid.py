"""Pose task: cuboid corners on the real frames and the ordering rule on synthetic poses."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bopask_gen.core.bop import ObjectInfo
from bopask_gen.core.camera import project_points
from bopask_gen.core.transforms import make_transform, transform_points
from bopask_gen.generator.cuboid import (
    cuboid_corners_cam,
    cuboid_corners_world,
    cuboid_points_px,
    order_cuboid_corners,
)
from bopask_gen.generator.scene import build_scene_geometry


@pytest.fixture(scope='module')
def scenes(ycbv_dataset):
    frames = [f for f in ycbv_dataset.frames('train_real') if f.im_id in (2, 5)]
    return [build_scene_geometry(ycbv_dataset, f) for f in frames]


def _assert_task_order(corners_world):
    bottom, top = corners_world[:4], corners_world[4:]
    assert bottom[:, 2].mean() < top[:, 2].mean()
    # Counter-clockwise seen from above: positive shoelace area in world (x, y).
    x, y = bottom[:, 0], bottom[:, 1]
    assert 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0
    # Each top corner sits on the same box edge above its bottom corner.
    edges = top - bottom
    assert np.allclose(edges, edges[0], atol=1e-9)


def test_real_corners_are_the_projected_gt_cuboid_in_task_order(scenes):
    for scene in scenes:
        for obj in scene.objects:
            px = cuboid_points_px(scene, obj)
            gt_px = project_points(transform_points(obj.T_m2c, obj.info.cuboid_corners()),
                                   scene.K)
            assert px.shape == (8, 2)
            # Same 8 points, each exactly once.
            d = np.linalg.norm(px[:, None] - gt_px[None], axis=2)
            assert np.all(d.min(axis=1) < 1e-6)
            assert sorted(np.argmin(d, axis=1).tolist()) == list(range(8))
            assert np.allclose(project_points(cuboid_corners_cam(scene, obj), scene.K), px)
            _assert_task_order(cuboid_corners_world(scene, obj))


def test_order_on_synthetic_poses_starts_front_left():
    info = ObjectInfo(obj_id=1, diameter=0.2, bbox_min=np.array([-0.05, -0.03, -0.1]),
                      bbox_size=np.array([0.1, 0.06, 0.2]))
    corners = info.cuboid_corners()
    rng = np.random.default_rng(0)
    for _ in range(20):
        # Any model orientation, any yaw; camera = world here (the rule is world-frame).
        R = Rotation.from_euler('xyz', rng.uniform(-np.pi, np.pi, 3)).as_matrix()
        T_m2w = make_transform(R, rng.uniform(-1, 1, 3))
        order = order_cuboid_corners(corners, T_m2w, np.eye(4))
        assert sorted(order.tolist()) == list(range(8))
        world = transform_points(T_m2w, corners[order])
        _assert_task_order(world)
    # Axis-aligned box in the world: the first corner is the (-x, -y) one, then +x, then +y.
    order = order_cuboid_corners(corners, np.eye(4), np.eye(4))
    bottom = corners[order[:4]]
    assert np.allclose(bottom[:, 2], -0.1)
    assert np.allclose(bottom[:, :2], [[-0.05, -0.03], [0.05, -0.03], [0.05, 0.03],
                                       [-0.05, 0.03]])
    # Upside down (model z pointing down): the model's +z face is now the bottom.
    flipped = make_transform(Rotation.from_euler('x', np.pi).as_matrix(), np.zeros(3))
    order = order_cuboid_corners(corners, flipped, np.eye(4))
    assert np.allclose(corners[order[:4], 2], 0.1)
