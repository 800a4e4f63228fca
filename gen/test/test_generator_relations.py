"""Spatial and depth relations against the 3D ground truth of the real frames."""

import dataclasses
import itertools

import numpy as np
import pytest

from bopask_gen.generator.relations import depth_relation, spatial_relations
from bopask_gen.generator.scene import build_scene_geometry, mask_visib


@pytest.fixture(scope='module')
def scenes(ycbv_dataset):
    frames = [f for f in ycbv_dataset.frames('train_real') if f.im_id in (1, 5)]
    return [build_scene_geometry(ycbv_dataset, f) for f in frames]


def test_spatial_answers_agree_with_the_gt_geometry(scenes):
    checked = 0
    for scene in scenes:
        up = scene.up_cam
        # Independent axes: the camera's x and optical axis, flattened onto the table.
        right = np.array([1.0, 0, 0]) - up[0] * up
        ahead = np.array([0, 0, 1.0]) - up[2] * up
        for a, b in itertools.permutations(scene.objects, 2):
            d = a.centre_cam - b.centre_cam
            for word, answer in spatial_relations(scene, a, b, margin=0.03):
                if word == 'left':
                    assert answer == (d @ right < 0)
                elif word == 'front':
                    assert answer == (d @ ahead < 0)
                else:
                    assert word == 'above' and answer == (d @ up > 0)
                checked += 1
    assert checked >= 10


def test_depth_answers_agree_with_the_gt_translations(scenes):
    checked = 0
    for scene in scenes:
        gts = {g.gt_index: g for g in scene.frame.gts}
        for a, b in itertools.permutations(scene.objects, 2):
            rel = depth_relation(scene, a, b, margin=0.03)
            # GT: the annotated translation (BOP model origin = bbox centre).
            da = np.linalg.norm(gts[a.gt_index].T_m2c[:3, 3])
            db = np.linalg.norm(gts[b.gt_index].T_m2c[:3, 3])
            if abs(da - db) <= 0.03:
                assert rel is None
            else:
                assert rel == ('closer', bool(da < db))
                checked += 1
                if abs(da - db) > 0.1:  # the sensor agrees on clear cases
                    za = np.median(scene.depth_m[mask_visib(scene, a) & (scene.depth_m > 0)])
                    zb = np.median(scene.depth_m[mask_visib(scene, b) & (scene.depth_m > 0)])
                    assert (za < zb) == rel[1]
    assert checked >= 4


def test_ambiguous_axes_are_left_out(scenes):
    scene = scenes[0]
    a = scene.objects[0]
    near = dataclasses.replace(a, centre_world=a.centre_world + [0.02, -0.05, 0.0],
                               centre_cam=a.centre_cam + [0, 0, 0.01])
    assert spatial_relations(scene, near, a, margin=0.03) == [('front', True)]
    assert spatial_relations(scene, a, near, margin=0.03) == [('front', False)]
    assert spatial_relations(scene, near, a, margin=0.01) == [
        ('left', False), ('front', True)]
    assert depth_relation(scene, near, a, margin=0.03) is None
    assert depth_relation(scene, near, a, margin=0.005) == ('closer', False)
    assert spatial_relations(scene, a, a) == []
