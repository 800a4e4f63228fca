"""Scene geometry on the real YCB-V frames: support plane, world frame, masks, refusals."""

import dataclasses

import numpy as np
import pytest

from bopask_gen.core.bop import GtInstance
from bopask_gen.core.camera import project_points
from bopask_gen.generator.scene import (
    build_scene_geometry,
    fit_support_plane,
    mask_visib,
    plane_agrees_with_objects,
)


@pytest.fixture(scope='module')
def scenes(ycbv_dataset):
    frames = [f for f in ycbv_dataset.frames('train_real') if f.im_id in (1, 4)]
    return [build_scene_geometry(ycbv_dataset, f, np.random.default_rng(3)) for f in frames]


def test_plane_is_the_table_under_the_gt_objects(scenes):
    for scene in scenes:
        assert scene.plane_source == 'ransac'
        assert np.isclose(np.linalg.norm(scene.plane_cam[:3]), 1.0)
        assert scene.plane_cam[3] > 0  # camera above the table
        for obj in scene.objects:
            low = np.min(scene.height_above_plane(obj.mesh_cam.vertices))
            assert abs(low) < 0.015, (scene.frame.scene_id, obj.obj_id, low)
        # Independent reference: the dataset's own world frame has z up on this data.
        z_dataset = scene.frame.T_w2c[:3, 2] * np.sign(-scene.frame.T_w2c[1, 2])
        angle = np.degrees(np.arccos(np.clip(z_dataset @ scene.plane_cam[:3], -1, 1)))
        assert angle < 10.0


def test_world_frame_axes_match_the_image(scenes):
    for scene in scenes:
        R = scene.T_c2w[:3, :3]
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.linalg.det(R) > 0
        origin_cam = scene.to_cam(np.zeros((1, 3)))
        assert abs(scene.height_above_plane(origin_cam)[0]) < 1e-9
        up = scene.to_cam(np.array([[0.0, 0.0, 1.0]])) - origin_cam
        assert np.allclose(up[0], scene.plane_cam[:3])
        for obj in scene.objects:
            c = obj.centre_world
            uv = project_points(scene.to_cam(np.array([c, c + [0.05, 0, 0]])), scene.K)
            assert uv[1, 0] > uv[0, 0] + 5  # world +x is image right
            behind = scene.to_cam(np.array([c, c + [0, 0.05, 0]]))
            assert np.linalg.norm(behind[1]) > np.linalg.norm(behind[0])  # +y away
            assert np.allclose(scene.to_world(obj.centre_cam[None])[0], c)


def _table_depth(scene):
    """Render the fitted table plane as a depth image (rays from the camera)."""
    v, u = np.mgrid[0:scene.height, 0:scene.width]
    K = scene.K
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1)
    denom = rays @ scene.plane_cam[:3]
    with np.errstate(divide='ignore'):
        t = -scene.plane_cam[3] / denom
    return np.where(t > 0, t, 0.0).astype(np.float32)


def test_inconsistent_plane_is_refitted_or_replaced(scenes):
    scene = scenes[0]
    meshes = [o.mesh_cam for o in scene.objects]
    boxes = [(o.info, o.T_m2c) for o in scene.objects]
    lifted = scene.plane_cam - np.array([0, 0, 0, 0.05])  # 5 cm higher: objects sink in
    assert not plane_agrees_with_objects(lifted, meshes)
    assert plane_agrees_with_objects(scene.plane_cam, meshes)
    # A wall through the objects dominates the cloud; the table is found on a refit.
    depth = _table_depth(scene)
    zc = float(np.mean([o.centre_cam[2] for o in scene.objects]))
    depth[: int(scene.height * 0.75), :] = zc
    plane, source = fit_support_plane(depth, scene.K, meshes, boxes, np.random.default_rng(0))
    assert source == 'ransac-refit'
    assert plane @ scene.plane_cam > 0.99


@pytest.mark.parametrize('kind', ['wall', 'no_depth'])
def test_wall_only_depth_falls_back_with_a_warning(scenes, ycbv_dataset, monkeypatch, kind):
    frame = dataclasses.replace(scenes[0].frame)
    zc = float(np.mean([o.centre_cam[2] for o in scenes[0].objects])) if kind == 'wall' else 0
    wall = np.full((scenes[0].height, scenes[0].width), zc, dtype=np.float32)
    monkeypatch.setattr(frame, 'depth_m', lambda: wall)  # synthetic input: a wall / no depth
    with pytest.warns(UserWarning, match='fallback-dataset-world-z'):
        scene = build_scene_geometry(ycbv_dataset, frame, np.random.default_rng(0))
    assert scene.plane_source == 'fallback-dataset-world-z'
    assert plane_agrees_with_objects(scene.plane_cam, [o.mesh_cam for o in scene.objects])
    assert scene.plane_cam @ scenes[0].plane_cam > 0.98


def test_objects_without_a_model_are_skipped_with_a_warning(scenes, ycbv_dataset):
    frame = scenes[0].frame
    extra = GtInstance(gt_index=len(frame.gts), obj_id=999, T_m2c=frame.gts[0].T_m2c)
    with pytest.warns(UserWarning, match='obj_id 999'):
        scene = build_scene_geometry(ycbv_dataset, dataclasses.replace(
            frame, gts=frame.gts + [extra]))
    assert [o.gt_index for o in scene.objects] == [g.gt_index for g in frame.gts]
    with pytest.raises(KeyError, match='gt_index 99'):
        scene.object_by_gt(99)
    only_missing = dataclasses.replace(frame, gts=[extra])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match='no object with a model'):
        build_scene_geometry(ycbv_dataset, only_missing)


def test_mask_visib_is_the_bop_file_and_cached(scenes):
    scene = scenes[0]
    obj = scene.objects[0]
    m = mask_visib(scene, obj)
    assert m.dtype == bool and m.shape == (scene.height, scene.width) and m.any()
    assert np.array_equal(m, scene.frame.mask_visib(obj.gt_index))
    assert mask_visib(scene, obj) is m
