import json
import shutil

import cv2
import numpy as np
import pytest

from bopask_gen.core.bop import BopDataset
from bopask_gen.core.camera import mesh_silhouette
from bopask_gen.core.errors import BopFormatError
from bopask_gen.core.transforms import transform_points


def test_reader_reads_real_scenes(ycbv_dataset):
    assert ycbv_dataset.splits() == ['train_real']
    assert ycbv_dataset.scene_ids('train_real') == [0, 1]
    frames = list(ycbv_dataset.frames('train_real'))
    assert len(frames) == 10
    frame = frames[0]
    assert frame.K[0, 0] == pytest.approx(1066.778)
    assert [g.obj_id for g in frame.gts] == [8, 14, 21]
    rgb, depth = frame.rgb(), frame.depth_m()
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    # GT translations are in metres and the sensor sees the objects at that distance.
    for g in frame.gts:
        mask = frame.mask_visib(g.gt_index)
        measured = np.median(depth[mask & (depth > 0)])
        assert abs(measured - g.T_m2c[2, 3]) < 0.1


def test_depth_is_raw_times_depth_scale(ycbv_dataset):
    frame = ycbv_dataset.scene('train_real', 0).frame(1)
    raw = cv2.imread(str(frame.image_path('depth')), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(frame.depth_mm(), raw * 0.1, rtol=1e-6)


def test_models_info_and_mesh_in_metres(ycbv_dataset):
    info = ycbv_dataset.models_info[8]
    mesh = ycbv_dataset.model_mesh(8)
    np.testing.assert_allclose(mesh.bounds[0], info.bbox_min, atol=1e-4)
    np.testing.assert_allclose(mesh.bounds[1] - mesh.bounds[0], info.bbox_size, atol=1e-4)
    assert 0.05 < info.diameter < 0.5


def test_projected_models_cover_their_visible_masks(ycbv_dataset):
    for frame in ycbv_dataset.frames('train_real'):
        for g in frame.gts:
            mesh = ycbv_dataset.model_mesh(g.obj_id)
            sil = mesh_silhouette(transform_points(g.T_m2c, mesh.vertices), mesh.faces,
                                  frame.K, 640, 480)
            visib = frame.mask_visib(g.gt_index)
            covered = (sil & visib).sum() / visib.sum()
            assert covered > 0.97, (frame.scene_id, frame.im_id, g.obj_id, covered)


def test_world_poses_are_consistent_across_frames(ycbv_dataset):
    scene = ycbv_dataset.scene('train_real', 1)
    first = None
    for frame in scene.frames():
        T_m2w = [frame.T_c2w @ g.T_m2c for g in frame.gts]
        if first is None:
            first = T_m2w
        for a, b in zip(first, T_m2w):
            assert np.linalg.norm(a[:3, 3] - b[:3, 3]) < 1e-3


@pytest.fixture
def broken_copy(tmp_path, ycbv_subset_dir):
    dst = tmp_path / 'ycbv_copy'
    shutil.copytree(ycbv_subset_dir, dst, ignore=shutil.ignore_patterns('*.ply', '*.png'))
    scene = dst / 'train_real' / '000000'
    for sub in ('rgb', 'depth', 'mask_visib'):
        (scene / sub).mkdir(exist_ok=True)
    shutil.copy(ycbv_subset_dir / 'train_real/000000/depth/000001.png', scene / 'depth')
    return dst


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(BopFormatError, match='dataset folder not found'):
        BopDataset(tmp_path / 'nope')
    ds = BopDataset(tmp_path)
    with pytest.raises(BopFormatError, match='models_info.json.*file not found'):
        _ = ds.models_info


def test_missing_key_names_file_and_key(broken_copy):
    path = broken_copy / 'train_real/000000/scene_gt.json'
    data = json.loads(path.read_text())
    del data['1'][1]['cam_t_m2c']
    path.write_text(json.dumps(data))
    scene = BopDataset(broken_copy).scene('train_real', 0)
    with pytest.raises(BopFormatError) as err:
        scene.frame(1)
    assert 'scene_gt.json' in str(err.value) and "'1/1/cam_t_m2c'" in str(err.value)
    with pytest.raises(BopFormatError, match="scene_camera.json.*'99'"):
        scene.frame(99)


def test_corrupt_json_and_wrong_shape(broken_copy):
    cam = broken_copy / 'train_real/000000/scene_camera.json'
    data = json.loads(cam.read_text())
    data['1']['cam_K'] = [1, 2, 3]
    cam.write_text(json.dumps(data))
    with pytest.raises(BopFormatError, match='cam_K.*expected 9 numbers'):
        BopDataset(broken_copy).scene('train_real', 0).frame(1)
    (broken_copy / 'train_real/000000/scene_gt.json').write_text('{"1": [')
    with pytest.raises(BopFormatError, match='scene_gt.json: not valid JSON'):
        BopDataset(broken_copy).scene('train_real', 0)


def test_wrong_dtype_and_corrupt_images(broken_copy):
    scene_dir = broken_copy / 'train_real/000000'
    frame = BopDataset(broken_copy).scene('train_real', 0).frame(1)
    cv2.imwrite(str(scene_dir / 'depth/000001.png'), np.zeros((4, 4), np.uint8))
    with pytest.raises(BopFormatError, match='000001.png: depth image must be single-channel'):
        frame.depth_m()
    (scene_dir / 'rgb/000001.png').write_bytes(b'not a png')
    with pytest.raises(BopFormatError, match='rgb/000001.png: unreadable or corrupt image'):
        frame.rgb()
    with pytest.raises(BopFormatError, match='000001_000000.png: file not found'):
        frame.mask_visib(0)


def test_missing_and_corrupt_model(broken_copy):
    ds = BopDataset(broken_copy)
    assert not ds.has_model(8)
    with pytest.raises(BopFormatError, match='obj_000008.ply: model file not found'):
        ds.model_mesh(8)
    (broken_copy / 'models/obj_000008.ply').write_text('ply\nformat ascii 1.0\ngarbage\n')
    with pytest.raises(BopFormatError, match='obj_000008.ply'):
        ds.model_mesh(8)
