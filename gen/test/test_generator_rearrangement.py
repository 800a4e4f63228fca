"""Rearrangement task: real frames and a synthetic target walled in by other objects."""

import dataclasses

import numpy as np
import pytest

from bopask_gen.core.transforms import make_transform, transform_points
from bopask_gen.generator import grasps as gr
from bopask_gen.generator.rearrangement import blocker_point_px, find_blockers
from bopask_gen.generator.scene import (
    build_scene_geometry,
    collision_model_mesh,
    mask_visib,
    SceneObject,
)

WALL_OBJ = 2  # YCB-V cracker box: 7.2 x 16.4 x 21.3 cm


@pytest.fixture(scope='module')
def scenes(ycbv_dataset):
    frames = [f for f in ycbv_dataset.frames('train_real') if f.im_id == 2]
    return [build_scene_geometry(ycbv_dataset, f) for f in frames]


def _placed(scene, gt_index, obj_id, R_world, centre_world):
    """A SceneObject of model ``obj_id`` with its bbox centre at ``centre_world``."""
    info = scene.dataset.models_info[obj_id]
    centre_model = info.bbox_min + info.bbox_size / 2.0
    T_m2w = make_transform(R_world, centre_world - R_world @ centre_model)
    T_m2c = scene.T_w2c @ T_m2w
    mesh = collision_model_mesh(scene.dataset, obj_id).copy()
    mesh.apply_transform(T_m2c)
    centre_cam = transform_points(T_m2c, centre_model[None])[0]
    return SceneObject(gt_index=gt_index, obj_id=obj_id, T_m2c=T_m2c, info=info,
                       mesh_cam=mesh, centre_cam=centre_cam, centre_world=centre_world,
                       visib_fract=1.0)


def _walled_in(scene, target):
    """The target alone on the table, with four upright cracker boxes 3 mm from its sides."""
    verts = scene.to_world(target.mesh_cam.vertices)
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    c = (lo + hi) / 2.0
    size = scene.dataset.models_info[WALL_OBJ].bbox_size  # model x thin, y long, z tall
    gap = 0.003
    walls = []
    rot_z90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for k, (axis, side) in enumerate([(0, 1), (0, -1), (1, 1), (1, -1)]):
        centre = c.copy()
        centre[2] = size[2] / 2.0 + 0.001
        centre[axis] = (hi if side > 0 else lo)[axis] + side * (gap + size[0] / 2.0)
        R = np.eye(3) if axis == 0 else rot_z90  # thin side faces the target
        walls.append(_placed(scene, 100 + k, WALL_OBJ, R, centre))
    return dataclasses.replace(scene, objects=[target] + walls, cache={})


def test_walled_in_target_has_blockers(scenes):
    scene = scenes[0]
    target = min(scene.objects, key=lambda o: o.info.diameter)
    alone = dataclasses.replace(scene, objects=[target], cache={})
    assert gr.top_grasps(alone, target, np.random.default_rng(0))  # graspable when alone
    assert find_blockers(alone, target, np.random.default_rng(0)) == []
    walled = _walled_in(scene, target)
    rng = np.random.default_rng(0)
    assert gr.top_grasps(walled, target, rng) == []
    blockers = find_blockers(walled, target, rng)
    assert blockers and set(blockers) <= {100, 101, 102, 103}
    # Moving the reported blockers frees a grasp.
    assert gr.top_grasps(walled, target, rng, ignore_objects=blockers)


def test_real_frames_answers_are_consistent(scenes):
    for scene in scenes:
        for obj in scene.objects:
            rng = np.random.default_rng(1)
            blockers = find_blockers(scene, obj, rng)
            free = gr.top_grasps(scene, obj, rng, k=1)
            if blockers is None:
                assert not free
            elif blockers == []:
                assert free
            else:
                assert not free and obj.gt_index not in blockers
                assert gr.top_grasps(scene, obj, rng, k=1, ignore_objects=blockers)


def test_blocker_point_is_on_the_visible_mask(scenes):
    for scene in scenes:
        for obj in scene.objects:
            u, v = np.round(blocker_point_px(scene, obj)).astype(int)
            assert mask_visib(scene, obj)[v, u]
