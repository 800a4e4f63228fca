"""Synthetic BOP scenes: round trip through the BOP reader, masks and depth vs the models."""

import json
import subprocess
import sys

import cv2
import numpy as np
import open3d as o3d
import pytest

from bopask_gen.core.bop import BopDataset
from bopask_gen.core.bop_writer import BopSceneWriter, depth_to_raw, gt_info_entry, mask_bbox
from bopask_gen.core.camera import project_points
from bopask_gen.core.errors import BopFormatError
from bopask_gen.core.transforms import transform_points
from bopask_gen.sim.synth import DEFAULT_SPLIT, generate_dataset

SCENES, IMAGES = 2, 2


@pytest.fixture(scope='module')
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp('synth') / 'ycbv_synth'
    stats = generate_dataset(out, SCENES, IMAGES, seed=5, progress=False)
    assert stats['images'] == SCENES * IMAGES
    return out


def _projected_silhouette(mesh, T_m2c, K, shape, ss=4):
    """Union of the projected triangles of the posed model (no z-buffer needed).

    Rasterised at ``ss`` times the resolution and averaged back: a pixel belongs to the
    silhouette when at least half of it is covered (cv2 fills every pixel a polygon's edge
    touches, which at full resolution would dilate the silhouette by half a pixel).
    """
    uv = project_points(transform_points(T_m2c, mesh.vertices), K)
    uv_ss = (uv + 0.5) * ss - 0.5  # pixel centres of the fine grid
    tris = np.round(uv_ss[mesh.faces] * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    h, w = shape
    img = np.zeros((h * ss, w * ss), np.uint8)
    for tri in tris:  # one by one: fillPoly with many contours cancels their overlaps
        cv2.fillConvexPoly(img, tri, 1, lineType=cv2.LINE_8, shift=4)
    return img.reshape(h, ss, w, ss).mean(axis=(1, 3)) >= 0.5


def _model_depth(mesh, T_m2c, K, uv):
    """Depth (z, metres) of the posed model surface along the rays through pixels ``uv``."""
    scene = o3d.t.geometry.RaycastingScene()
    verts = transform_points(T_m2c, mesh.vertices).astype(np.float32)
    scene.add_triangles(o3d.core.Tensor(verts), o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    dirs = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1],
                     np.ones(len(uv))], axis=1)
    rays = np.concatenate([np.zeros_like(dirs), dirs], axis=1).astype(np.float32)
    t = scene.cast_rays(o3d.core.Tensor(rays))['t_hit'].numpy()
    return t  # direction has z = 1, so t is the depth along the optical axis


def test_round_trip_through_the_bop_reader(synth_dir):
    ds = BopDataset(synth_dir)
    assert ds.splits() == [DEFAULT_SPLIT]
    assert ds.scene_ids(DEFAULT_SPLIT) == list(range(SCENES))
    assert sorted(ds.models_info) == list(range(1, 22))
    frames = list(ds.frames(DEFAULT_SPLIT))
    assert len(frames) == SCENES * IMAGES
    for frame in frames:
        assert 3 <= len(frame.gts) <= 8
        assert frame.rgb().shape == (480, 640, 3)
        assert frame.depth_m().shape == (480, 640)
        assert frame.T_w2c is not None
        for gt in frame.gts:
            info = ds.models_info[gt.obj_id]
            mesh = ds.model_mesh(gt.obj_id)
            # Models: metres after reading, origin at the bbox centre.
            assert np.abs(mesh.bounds.mean(axis=0)).max() < 1e-6
            assert info.bbox_min == pytest.approx(-info.bbox_size / 2, abs=1e-6)
            # Objects rest on the table top: world z = 0 (world frame of cam_*_w2c).
            T_world_obj = frame.T_c2w @ gt.T_m2c
            lowest = transform_points(T_world_obj, mesh.vertices)[:, 2].min()
            assert abs(lowest) < 0.004
            assert frame.mask_visib(gt.gt_index).sum() == gt.px_count_visib
    cam = json.loads((synth_dir / 'camera.json').read_text())
    assert (cam['width'], cam['height']) == (640, 480)


def test_projected_models_match_visible_masks(synth_dir):
    ds = BopDataset(synth_dir)
    checked = 0
    for frame in ds.frames(DEFAULT_SPLIT):
        for gt in frame.gts:
            if gt.visib_fract < 0.995 or gt.px_count_visib < 300:
                continue  # occluded (or clipped by the image border)
            x, y, w, h = gt.bbox_obj
            if x <= 0 or y <= 0 or x + w >= 640 or y + h >= 480:
                continue
            sil = _projected_silhouette(ds.model_mesh(gt.obj_id), gt.T_m2c, frame.K,
                                        (480, 640))
            vis = frame.mask_visib(gt.gt_index)
            iou = (sil & vis).sum() / (sil | vis).sum()
            assert iou >= 0.95, (frame.scene_id, frame.im_id, gt.obj_id, iou)
            checked += 1
    assert checked >= 4


def test_depth_matches_model_surfaces(synth_dir):
    ds = BopDataset(synth_dir)
    checked = 0
    for frame in ds.frames(DEFAULT_SPLIT):
        depth = frame.depth_m()
        for gt in frame.gts:
            vis = frame.mask_visib(gt.gt_index)
            inner = cv2.erode(vis.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            if inner.sum() < 100:
                continue
            v, u = np.nonzero(inner)
            model = _model_depth(ds.model_mesh(gt.obj_id), gt.T_m2c, frame.K,
                                 np.stack([u, v], axis=1).astype(float))
            hit = np.isfinite(model)
            assert hit.mean() > 0.98
            err = np.abs(depth[v, u][hit] - model[hit])
            assert np.percentile(err, 95) < 0.002, (frame.scene_id, gt.obj_id, err.max())
            checked += 1
    assert checked >= 6


def test_gt_info_fields():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    visib = mask.copy()
    visib[2:5, 3:6] = False
    depth = np.ones((10, 12))
    depth[2, 3] = 0.0
    info = gt_info_entry(mask, visib, depth)
    assert info['bbox_obj'] == [3, 2, 6, 3]
    assert info['bbox_visib'] == [6, 2, 3, 3]
    assert info['px_count_all'] == 18 and info['px_count_visib'] == 9
    assert info['px_count_valid'] == 17 and info['visib_fract'] == 0.5
    assert mask_bbox(np.zeros((3, 3), bool)) == [-1, -1, -1, -1]
    with pytest.raises(ValueError, match='depth_scale'):
        depth_to_raw(np.full((2, 2), 7.0), depth_scale=0.1)


def test_bad_synth_arguments_are_refused(tmp_path):
    out = subprocess.run([sys.executable, '-m', 'bopask_gen.cli', 'synth', '--out',
                          str(tmp_path / 'x'), '--scenes', '0'], capture_output=True, text=True)
    assert out.returncode == 2 and '--scenes' in out.stdout
    out = subprocess.run([sys.executable, '-m', 'bopask_gen.cli', 'grasp-check',
                          str(tmp_path / 'missing')], capture_output=True, text=True)
    assert out.returncode == 2 and 'dataset folder not found' in out.stdout
    with pytest.raises(BopFormatError):
        BopDataset(tmp_path / 'missing')


def test_build_runs_on_synthetic_data(synth_dir, tmp_path):
    out = subprocess.run(
        [sys.executable, '-m', 'bopask_gen.cli', 'build', str(synth_dir), '--split',
         DEFAULT_SPLIT, '--out', str(tmp_path / 'qa'), '--objects', 'ycbv', '--workers', '1',
         '--limit-images', '1'], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    shards = list((tmp_path / 'qa' / 'data').glob('*.jsonl'))
    assert shards and shards[0].read_text().strip()


def test_scene_writer_replaces_a_scene_and_refuses_bad_images(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    depth = np.full((4, 5), 0.5)
    mask = np.ones((4, 5), bool)
    inst = [{'obj_id': 3, 'T_m2c': np.eye(4), 'mask': mask, 'mask_visib': mask}]
    with BopSceneWriter(tmp_path, 'train', 0) as w:
        for im_id in range(3):
            w.add_frame(im_id, rgb, depth, np.eye(3), np.eye(4), inst)
    with BopSceneWriter(tmp_path, 'train', 0) as w:
        w.add_frame(0, rgb, depth, np.eye(3), None, inst)
        with pytest.raises(ValueError, match='uint8'):
            w.add_frame(1, rgb.astype(float), depth, np.eye(3), None, inst)
        with pytest.raises(ValueError, match='depth shape'):
            w.add_frame(1, rgb, depth[:2], np.eye(3), None, inst)
    scene = tmp_path / 'train' / '000000'
    assert sorted(p.name for p in (scene / 'rgb').iterdir()) == ['000000.png']
    assert sorted(p.name for p in (scene / 'mask_visib').iterdir()) == ['000000_000000.png']
    frame = BopDataset(tmp_path).scene('train', 0).frame(0)
    assert frame.T_w2c is None and frame.depth_m()[0, 0] == pytest.approx(0.5)
