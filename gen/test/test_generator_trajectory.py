"""Trajectory task: OMPL plans on the real frames, checked independently with trimesh."""

import dataclasses
import itertools

import cv2
import numpy as np
import pytest
import trimesh

from bopask_gen.core.camera import project_points
from bopask_gen.core.transforms import make_transform
from bopask_gen.generator.scene import build_scene_geometry, clean_model_mesh, mask_visib
from bopask_gen.generator.trajectory import (
    _MovingBox,
    DELIVERY_DEPTH_PX,
    goal_above,
    GOAL_CLEARANCE,
    plan_trajectory,
    rdp,
    waypoints_clear_of_other_objects,
)


@pytest.fixture(scope='module')
def scenes(ycbv_dataset):
    frames = [f for f in ycbv_dataset.frames('train_real') if f.im_id == 3]
    return [build_scene_geometry(ycbv_dataset, f) for f in frames]


@pytest.fixture(scope='module')
def plans(scenes):
    out = []
    for scene in scenes:
        for a, b in itertools.permutations(scene.objects, 2):
            out.append((scene, a, b, plan_trajectory(scene, a, b, np.random.default_rng(5))))
    return out


def _box_at(obj, centre_cam, shrink=0.002):
    """A's cuboid (shrunk by ``shrink`` per side) with its centre at ``centre_cam``."""
    return trimesh.creation.box(extents=obj.info.bbox_size - 2 * shrink,
                                transform=make_transform(obj.T_m2c[:3, :3], centre_cam))


def test_paths_are_found_start_on_a_and_end_on_b(plans):
    found = [p for p in plans if p[3] is not None]
    # Some pairs have no path whose waypoints stay off other objects in the image (e.g. the
    # hover point above B projects onto an object behind B); those give no question.
    assert len(found) >= 0.6 * len(plans)
    for scene, a, b, path in found:
        assert path.ndim == 2 and path.shape[1] == 3 and len(path) >= 3
        assert waypoints_clear_of_other_objects(scene, path, a, b)
        assert np.allclose(path[0], a.centre_cam)
        hover, end = scene.to_world(path[-2:])
        b_top = np.max(scene.height_above_plane(b.mesh_cam.vertices))
        centred = np.array([*b.centre_world[:2], hover[2]])
        # Over B's centre unless A's box collides there (then over another point of B).
        if not _MovingBox(scene, a).hits(centred):
            assert np.allclose(hover[:2], b.centre_world[:2], atol=1e-6)
        assert np.allclose(end[:2], hover[:2], atol=1e-6)
        assert np.isclose(end[2], b_top, atol=1e-6)
        a_box = scene.to_world(_box_at(a, path[-2], 0.0).vertices)
        assert np.isclose(a_box[:, 2].min(), b_top + GOAL_CLEARANCE, atol=1e-6)
        # First point in A's silhouette, last point in B's (what the evaluator checks).
        for point, obj in ((path[0], a), (path[-1], b)):
            u, v = np.round(project_points(point[None], scene.K)[0]).astype(int)
            mask = scene.frame.mask(obj.gt_index).astype(np.uint8)
            assert cv2.dilate(mask, np.ones((5, 5)))[v, u], (a.obj_id, b.obj_id)


def test_paths_are_collision_free_under_an_independent_check(plans):
    for scene, a, b, path in plans:
        if path is None:
            continue
        others = trimesh.collision.CollisionManager()
        for o in scene.objects:
            if o.gt_index != a.gt_index:
                others.add_object(str(o.gt_index),
                                  clean_model_mesh(scene.dataset, o.obj_id), transform=o.T_m2c)
        start_contacts = others.in_collision_single(_box_at(a, path[0]), return_names=True)[1]
        # The last segment delivers A onto B by definition; the rest must be free.
        for i, (p, q) in enumerate(zip(path[:-2], path[1:-1])):
            n = max(int(np.linalg.norm(q - p) / 0.005), 1)
            for t in np.linspace(0.0, 1.0, n + 1)[int(i == 0):]:
                box = _box_at(a, p + t * (q - p))
                hit, names = others.in_collision_single(box, return_names=True)
                # Objects touching A where it rests may only be touched on the lift.
                allowed = start_contacts if i == 0 else set()
                assert not (names - allowed), (a.obj_id, b.obj_id, i, t, names)
                low = np.min(scene.height_above_plane(box.vertices))
                assert low > min(np.min(scene.height_above_plane(
                    _box_at(a, path[0]).vertices)), 0.0) - 0.005
            if i == 0 and start_contacts:
                assert np.allclose(np.cross(q - p, scene.up_cam), 0.0, atol=1e-9)  # lift


def test_deterministic_for_a_seed_and_refuses_same_object(scenes, plans):
    scene, a, b, path = next(p for p in plans if p[3] is not None)
    again = plan_trajectory(scene, a, b, np.random.default_rng(5))
    assert np.array_equal(again, path)
    with pytest.raises(ValueError, match='two different objects'):
        plan_trajectory(scene, a, a, np.random.default_rng(0))


def _copy_moved(scene, obj, shift_world, gt_index=99):
    """A copy of ``obj`` (a new GT index) translated by ``shift_world`` (world frame)."""
    shift = scene.T_w2c[:3, :3] @ shift_world
    T = obj.T_m2c.copy()
    T[:3, 3] += shift
    return dataclasses.replace(obj, gt_index=gt_index, T_m2c=T,
                               centre_cam=obj.centre_cam + shift,
                               centre_world=obj.centre_world + shift_world,
                               mesh_cam=obj.mesh_cam.copy().apply_translation(shift))


def test_blocked_goal_gives_none(scenes):
    scene = scenes[0]
    a, b = scene.objects[0], scene.objects[1]
    # A copy of B floating just above B (its bottom inside the layer where A would hover)
    # leaves A no room anywhere over B.
    h = scene.height_above_plane(b.mesh_cam.vertices)
    lid = _copy_moved(scene, b, np.array([0.0, 0.0, np.ptp(h) + GOAL_CLEARANCE + 0.005]))
    blocked = dataclasses.replace(scene, objects=scene.objects + [lid], cache={})
    assert plan_trajectory(blocked, a, b, np.random.default_rng(0)) is None


def test_goal_moves_over_b_when_a_neighbour_crowds_its_centre(scenes):
    # A tall neighbour right beside a flat B (sim episode: the mustard bottle to the
    # scissors beside the pitcher) used to leave no goal at all.
    scene = scenes[0]
    a, b = scene.objects[0], scene.objects[1]
    centred = goal_above(scene, _MovingBox(scene, a), b)
    assert np.allclose(centred[:2], b.centre_world[:2])
    # A copy of A hovering beside the centred goal, overlapping it by a fifth of A's
    # thinnest horizontal side.
    axes = scene.T_c2w[:3, :3] @ a.T_m2c[:3, :3]
    horizontal = [i for i in range(3) if abs(axes[2, i]) < 0.5]
    k = min(horizontal, key=lambda i: a.info.bbox_size[i])
    side = axes[:, k] * np.array([1.0, 1.0, 0.0])
    side /= np.linalg.norm(side)
    neighbour = _copy_moved(scene, a, centred + 0.8 * a.info.bbox_size[k] * side
                            - a.centre_world)
    crowded = dataclasses.replace(scene, objects=scene.objects + [neighbour], cache={})
    mover = _MovingBox(crowded, a)
    assert mover.hits(centred) == {99}
    goal = goal_above(crowded, mover, b)
    assert goal is not None and not mover.hits(goal)
    assert np.isclose(goal[2], centred[2])
    # The free point over B nearest B's centre: a point of B's footprint, away from the
    # neighbour, with no free point of B's footprint (seen on B) nearer the centre.
    offset = np.linalg.norm(goal[:2] - centred[:2])
    assert 0.0 < offset < 0.05 and (goal[:2] - centred[:2]) @ side[:2] < 0.0
    b_xy = scene.to_world(b.mesh_cam.vertices)[:, :2]
    assert np.min(np.linalg.norm(b_xy - goal[:2], axis=1)) < 1e-9
    nearer = b_xy[np.linalg.norm(b_xy - centred[:2], axis=1) < offset - 1e-9]
    assert all(mover.hits(np.array([x, y, goal[2]])) for x, y in nearer
               if _on_visible_b(crowded, b, x, y))
    path = plan_trajectory(crowded, a, b, np.random.default_rng(5), clear_of_masks=False)
    assert path is not None
    hover, end = crowded.to_world(path[-2:])
    assert np.allclose(hover, goal, atol=1e-9) and np.allclose(end[:2], goal[:2], atol=1e-9)
    # The path ends on B's visible part in the image.
    u, v = np.round(project_points(path[-1:], scene.K)[0]).astype(int)
    assert mask_visib(scene, b)[v, u]


def _on_visible_b(scene, b, x, y):
    """True when B's top at (x, y) projects DELIVERY_DEPTH_PX inside B's visible mask."""
    top = np.max(scene.height_above_plane(b.mesh_cam.vertices))
    u, v = np.round(project_points(scene.to_cam(np.array([[x, y, top]])), scene.K)[0])
    size = 2 * DELIVERY_DEPTH_PX + 1
    inner = cv2.erode(mask_visib(scene, b).astype(np.uint8), np.ones((size, size), np.uint8))
    return bool(inner[int(v), int(u)])


def test_rdp_keeps_ends_and_corners_only():
    line = np.array([[0, 0, 0], [1, 0.001, 0], [2, 0, 0], [2, 1, 0], [2, 2, 0.002]], float)
    assert np.array_equal(rdp(line, 0.01), line[[0, 2, 4]])
    assert np.array_equal(rdp(line, 5.0), line[[0, 4]])
    assert np.array_equal(rdp(line[:2], 0.01), line[:2])
