"""Grasp task on the real frames, with an independent collision check (trimesh + fcl)."""

import cv2
import numpy as np
import pytest
import trimesh

from bopask_gen.core import gripper
from bopask_gen.core.camera import project_points
from bopask_gen.core.transforms import transform_points
from bopask_gen.generator import grasps as gr
from bopask_gen.generator.scene import build_scene_geometry, clean_model_mesh


@pytest.fixture(scope='module')
def scenes(ycbv_dataset):
    frames = [f for f in ycbv_dataset.frames('train_real') if f.im_id in (1, 3)]
    return [build_scene_geometry(ycbv_dataset, f) for f in frames]


@pytest.fixture(scope='module')
def top(scenes):
    return [{o.gt_index: gr.top_grasps(s, o, np.random.default_rng(7)) for o in s.objects}
            for s in scenes]


def _full_res_manager(scene, skip=()):
    """Collision manager over the full-resolution (not decimated) posed models."""
    manager = trimesh.collision.CollisionManager()
    for o in scene.objects:
        if o.gt_index not in skip:
            manager.add_object(str(o.gt_index), clean_model_mesh(scene.dataset, o.obj_id),
                               transform=o.T_m2c)
    return manager


def _hand_meshes(grasp, width, shrink):
    """Hand boxes as trimesh boxes, each shrunk by ``shrink`` per side (decimation slack)."""
    out = []
    for extents, T_box in gripper.gripper_boxes(width):
        out.append(trimesh.creation.box(extents=np.maximum(extents - 2 * shrink, 1e-4),
                                        transform=grasp.T_cam @ T_box))
    return out


def test_most_objects_get_five_distinct_grasps(scenes, top):
    counts = [len(g) for t in top for g in t.values()]
    assert sum(c == 5 for c in counts) >= len(counts) // 2
    for per_scene in top:
        for grasps in per_scene.values():
            scores = [g.score for g in grasps]
            assert scores == sorted(scores, reverse=True)
            centres = np.array([g.T_cam[:3, 3] for g in grasps]).reshape(-1, 3)
            if len(centres) > 1:
                d = np.linalg.norm(centres[:, None] - centres[None], axis=2)
                approaches = np.array([g.T_cam[:3, 2] for g in grasps])
                same = (d < 0.01) & (approaches @ approaches.T > 0.94)
                assert not np.any(same[np.triu_indices(len(centres), 1)])


def test_grasp_geometry_keypoints_and_sides(scenes, top):
    for scene, per_scene in zip(scenes, top):
        for gt, grasps in per_scene.items():
            obj = scene.object_by_gt(gt)
            silhouette = cv2.dilate(scene.frame.mask(gt).astype(np.uint8), np.ones((9, 9)))
            for g in grasps:
                R = g.T_cam[:3, :3]
                assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and np.linalg.det(R) > 0
                assert 0 < g.width <= gripper.MAX_OPENING
                assert np.allclose(g.keypoints_cam, gripper.grasp_keypoints(g.T_cam, g.width))
                assert g.keypoints_px[3, 0] < g.keypoints_px[4, 0]  # left tip = smaller u
                assert g.keypoints_px[1, 0] <= g.keypoints_px[2, 0] + 1.0
                # Contacts on the model surface, antipodal, the width apart.
                mesh = clean_model_mesh(scene.dataset, obj.obj_id)
                local = transform_points(np.linalg.inv(obj.T_m2c), g.contacts_cam)
                _, dist, _ = trimesh.proximity.closest_point(mesh, local)
                assert np.all(dist < 1e-3)
                assert np.isclose(np.linalg.norm(np.diff(g.contacts_cam, axis=0)), g.width)
                # The grasp centre (contact midpoint) projects onto the object.
                mid = g.contacts_cam.mean(axis=0)
                u, v = np.round(project_points(mid[None], scene.K)[0]).astype(int)
                assert silhouette[v, u], (gt, u, v)
                assert np.linalg.norm(mid - obj.centre_cam) < obj.info.diameter / 2


def test_top_grasps_are_free_under_an_independent_check(scenes, top):
    for scene, per_scene in zip(scenes, top):
        for gt, grasps in per_scene.items():
            others = _full_res_manager(scene, skip=(gt,))
            own = _full_res_manager(scene, skip=[o.gt_index for o in scene.objects
                                                 if o.gt_index != gt])
            for g in grasps:
                # Other objects: the hand as it closes (nominal width), 1.5 mm slack for
                # the decimated collision meshes.
                for box in _hand_meshes(g, g.width, 0.0015):
                    assert not others.in_collision_single(box), (gt, g.score)
                # Own object: the hand opened for the approach.
                opened = min(g.width + 2 * gr.CLEARANCE, gripper.MAX_OPENING)
                for box in _hand_meshes(g, opened, 0.0015):
                    assert not own.in_collision_single(box), (gt, g.score)
                # The straight approach (pre-grasp poses backed off along -z) is free too.
                for d in gr.APPROACH_CHECKS:
                    back = gr.Grasp(**{**g.__dict__, 'T_cam': g.T_cam.copy()})
                    back.T_cam[:3, 3] -= d * g.T_cam[:3, 2]
                    for box in _hand_meshes(back, opened, 0.0015):
                        assert not others.in_collision_single(box), (gt, g.score, d)
                # Table: every hand corner above the plane.
                corners = gr.hand_corners_cam(g)
                assert np.min(scene.height_above_plane(corners)) >= -gr.TABLE_MARGIN


def test_grasp_collides_reports_the_hit_object(scenes, top):
    scene, per_scene = scenes[1], top[1]
    gts = [gt for gt, grasps in per_scene.items() if grasps]
    assert len(gts) >= 2
    g = per_scene[gts[0]][0]
    assert gr.grasp_collides(scene, g) == set()
    target = scene.object_by_gt(gts[1])
    moved = gr.Grasp(**{**g.__dict__})
    moved.T_cam = g.T_cam.copy()
    moved.T_cam[:3, 3] += target.centre_cam - g.contacts_cam.mean(axis=0)
    assert gts[1] in gr.grasp_collides(scene, moved)
    sunk = gr.Grasp(**{**g.__dict__})
    sunk.T_cam = g.T_cam.copy()
    sunk.T_cam[:3, 3] -= 0.5 * scene.up_cam
    assert gr.TABLE in gr.grasp_collides(scene, sunk)


def test_grasps_prefer_top_down_and_are_deterministic(scenes, top, ycbv_dataset):
    firsts = [grasps[0] for t in top for grasps in t.values() if grasps]
    down = np.array([-(g.T_cam[:3, 2] @ s.up_cam) for s, t in zip(scenes, top)
                     for g in [grasps[0] for grasps in t.values() if grasps]])
    assert np.median(down) > 0.7  # approach from above on this tabletop data
    assert len(firsts) >= 4
    again = build_scene_geometry(ycbv_dataset, scenes[0].frame)
    obj = again.objects[0]
    a = gr.top_grasps(again, obj, np.random.default_rng(7))
    b = top[0][obj.gt_index]
    assert len(a) == len(b) and all(np.allclose(x.T_cam, y.T_cam) for x, y in zip(a, b))
