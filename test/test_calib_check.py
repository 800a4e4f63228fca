"""``bopask calib-check``: the extrinsic error it reports, in the MuJoCo world and from files."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from bopask_gen.core.transforms import (
    make_transform,
    rotation_angle_between,
    xyz_quat_xyzw_from_transform,
)
from bopask_ros import calib_check as cc
from bopask_ros.cli import main

REPO = Path(__file__).resolve().parents[1]


def look_at_base(eye, target):
    """T_base_camera (optical frame) of a camera at ``eye`` looking at ``target`` (base frame)."""
    from bopask_gen.sim.world import look_at_optical
    return look_at_optical(eye, target)


# A camera on the far side of the table, looking back at the objects and the robot base.
T_TRUE = look_at_base([1.05, 0.0, 0.6], [0.52, 0.0, 0.03])


def write_extrinsics(path, T, node='backprojection_node'):
    t, q = xyz_quat_xyzw_from_transform(T)
    path.write_text(yaml.safe_dump({node: {'ros__parameters': {
        'base_frame': 'panda_link0', 'camera_frame': 'camera_color_optical_frame',
        'extrinsic': {'translation': t.tolist(), 'rotation_xyzw': q.tolist()}}}}))
    return path


@pytest.fixture(scope='module')
def extrinsics_file(tmp_path_factory):
    return write_extrinsics(tmp_path_factory.mktemp('calib') / 'extrinsics.yaml', T_TRUE)


@pytest.fixture(scope='module')
def sim_records():
    """Two simulated recordings of known object points (real MuJoCo render, real depth)."""
    return cc.sim_frames(T_TRUE, frames=2, seed=0)


@pytest.fixture(scope='module')
def sim_points(sim_records):
    return cc.observations_from_frames(sim_records)


def last_json(capsys):
    out = capsys.readouterr()
    return json.loads(out.out.strip().splitlines()[-1]), out


def test_true_extrinsic_gives_millimetre_errors(sim_points):
    pc, pb = sim_points
    report = cc.evaluate(T_TRUE, pc, pb)
    assert report['points'] >= 20
    assert report['residual_mean_m'] < 0.002
    assert report['translation_error_m'] < 0.003
    assert report['rotation_error_deg'] < 0.3
    est = report['estimated_extrinsic']
    from bopask_gen.core.transforms import transform_from_xyz_quat_xyzw
    T_est = transform_from_xyz_quat_xyzw(est['translation'], est['rotation_xyzw'])
    assert np.degrees(rotation_angle_between(T_est, T_TRUE)) < 0.3


@pytest.mark.parametrize('xyz,rpy,expect_t,expect_r', [
    ((0.02, 0.0, 0.0), (0.0, 0.0, 0.0), 0.02, 0.0),
    ((0.0, -0.015, 0.01), (0.0, 0.0, 0.0), np.hypot(0.015, 0.01), 0.0),
    ((0.0, 0.0, 0.0), (0.0, 2.0, 0.0), 0.0, 2.0),
    ((0.01, 0.0, 0.0), (1.5, 0.0, -1.0), 0.01, None),
])
def test_perturbed_extrinsic_gives_the_perturbation_back(sim_points, xyz, rpy, expect_t,
                                                         expect_r):
    pc, pb = sim_points
    T_bad = cc.perturb(T_TRUE, xyz, rpy)
    report = cc.evaluate(T_bad, pc, pb)
    truth = cc.evaluate(T_TRUE, pc, pb)
    assert report['translation_error_m'] == pytest.approx(expect_t, abs=0.003)
    expected_angle = np.degrees(rotation_angle_between(T_bad, T_TRUE))
    if expect_r is not None:
        assert expected_angle == pytest.approx(expect_r, abs=1e-6)
    assert report['rotation_error_deg'] == pytest.approx(expected_angle, abs=0.3)
    # What a grasp would be off by grows with the error (>= 8 mm for every case here).
    assert report['residual_mean_m'] > truth['residual_mean_m'] + 0.008


def test_fit_recovers_a_known_transform_and_refuses_degenerate_points():
    rng = np.random.default_rng(4)
    T = cc.perturb(make_transform(np.eye(3), [0.3, -0.2, 0.5]), (0, 0, 0), (20, -35, 140))
    pc = rng.uniform(-0.3, 0.3, (12, 3)) + [0, 0, 0.8]
    pb = pc @ T[:3, :3].T + T[:3, 3]
    T_fit = cc.fit_extrinsic(pc, pb)
    assert np.allclose(T_fit, T, atol=1e-9)
    line = np.outer(np.linspace(0, 1, 6), [0.1, 0.2, 0.3])
    assert cc.fit_extrinsic(line, line) is None          # collinear: rotation undetermined
    assert cc.fit_extrinsic(pc[:2], pb[:2]) is None      # too few points
    report = cc.evaluate(T, pc[:2], pb[:2])
    assert report['translation_error_m'] is None and report['residual_max_m'] < 1e-9


def test_saved_frames_file_reproduces_the_sim_measurement(sim_records, sim_points, tmp_path):
    path = cc.save_frames(sim_records, tmp_path)
    pc, pb, K = cc.load_observations(path)
    assert np.allclose(K, sim_records[0].K)
    direct = cc.evaluate(T_TRUE, *sim_points)
    from_file = cc.evaluate(T_TRUE, pc, pb)
    assert from_file['points'] == direct['points']
    # 16UC1 depth is quantised to 1 mm: the same figures within a millimetre.
    assert from_file['translation_error_m'] == pytest.approx(
        direct['translation_error_m'], abs=0.001)
    assert from_file['residual_mean_m'] < 0.002


def test_cli_sim_flags_a_perturbed_extrinsic(extrinsics_file, capsys):
    rc = main(['calib-check', '--sim', '--sim-frames', '1', '--extrinsics', str(extrinsics_file),
               '--perturb-xyz', '0.03', '0', '0'])
    report, out = last_json(capsys)
    assert rc == 1, out.out
    assert 'FAIL' in out.out
    assert report['translation_error_m'] == pytest.approx(0.03, abs=0.003)
    assert report['ok'] is False


def test_cli_frames_file_passes_with_the_true_extrinsic(sim_records, extrinsics_file, tmp_path,
                                                        capsys):
    path = cc.save_frames(sim_records[:1], tmp_path)
    rc = main(['calib-check', '--frames', str(path), '--extrinsics', str(extrinsics_file)])
    report, out = last_json(capsys)
    assert rc == 0, out.out
    assert report['ok'] is True and report['translation_error_m'] < 0.003
    assert 'best-fit extrinsic' in out.out


def test_config_extrinsics_file_is_documented_and_loads():
    path = REPO / 'config' / 'extrinsics.yaml'
    assert path.is_file(), 'config/extrinsics.yaml (the documented extrinsic) is missing'
    extrinsic = cc.load_extrinsic(path)
    assert extrinsic.T_base_camera.shape == (4, 4)
    assert '#' in path.read_text(), 'config/extrinsics.yaml should document its fields'


# ----------------------------------------------------------------------------- refusals
def frames_yaml(tmp_path, data):
    path = tmp_path / 'frames.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


K9 = [500.0, 0, 319.5, 0, 500.0, 239.5, 0, 0, 1]
GOOD_OBS = {'pixel': [320, 240], 'depth_m': 0.8, 'point_base': [0.5, 0.0, 0.0]}


@pytest.mark.parametrize('data,message', [
    ({'observations': [GOOD_OBS]}, 'needs K'),
    ({'K': [[1, 0], [0, 1]], 'observations': [GOOD_OBS]}, 'expected a 3x3'),
    ({'camera_info': {'k': K9}, 'observations': []}, 'non-empty list'),
    ({'camera_info': {'k': K9}, 'observations': [{'pixel': [1, 2], 'depth_m': 1.0}]},
     'missing point_base'),
    ({'camera_info': {'k': K9}, 'observations': [{'pixel': [1, 2], 'point_base': [0, 0, 0]}]},
     'needs depth_m or depth_image'),
    ({'camera_info': {'k': K9, 'width': 640, 'height': 480},
      'observations': [dict(GOOD_OBS, pixel=[700, 10])]}, 'outside the 640x480 image'),
    ({'camera_info': {'k': K9}, 'observations': [dict(GOOD_OBS, depth_m=0.0)]},
     'no valid depth'),
    ({'camera_info': {'k': K9}, 'observations': [dict(GOOD_OBS, point_base=[1, 'x', 2])]},
     'point_base'),
])
def test_bad_frames_files_are_refused_with_the_reason(tmp_path, data, message):
    with pytest.raises(cc.CalibCheckError, match=message):
        cc.load_observations(frames_yaml(tmp_path, data))


def test_depth_hole_and_missing_depth_image_are_refused(tmp_path):
    import cv2
    cv2.imwrite(str(tmp_path / 'hole.png'), np.zeros((480, 640), np.uint16))
    obs = {'pixel': [100, 100], 'depth_image': 'hole.png', 'point_base': [0, 0, 0]}
    path = frames_yaml(tmp_path, {'camera_info': {'k': K9}, 'observations': [obs]})
    with pytest.raises(cc.CalibCheckError, match=r'observations\[0\].*no valid depth'):
        cc.load_observations(path)
    path = frames_yaml(tmp_path, {'camera_info': {'k': K9},
                                  'observations': [dict(obs, depth_image='nope.png')]})
    with pytest.raises(cc.CalibCheckError, match='nope.png not found'):
        cc.load_observations(path)


@pytest.mark.parametrize('content,message', [
    ({'backprojection_node': {'ros__parameters': {'extrinsic': {
        'translation': [0, 0, 1], 'rotation_xyzw': [0, 0, 0, 2]}}}}, 'unit norm'),
    ({'backprojection_node': {'ros__parameters': {'extrinsic': {
        'translation': [0, 0], 'rotation_xyzw': [0, 0, 0, 1]}}}}, 'expected 3'),
    ({'backprojection_node': {'ros__parameters': {'extrinsic': {
        'translation': [0, 0, 1]}}}}, 'missing parameter.*rotation_xyzw'),
    ({'backprojection_node': {'ros__parameters': {'use_tf': True}}}, 'no node section'),
    ({'backprojection_node': {'extrinsic': {}}}, 'ros__parameters'),
    (['not', 'a', 'mapping'], 'top level'),
])
def test_bad_extrinsics_files_are_refused(tmp_path, content, message):
    path = tmp_path / 'ext.yaml'
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(cc.CalibCheckError, match=message):
        cc.load_extrinsic(path)


def test_extrinsic_in_a_wildcard_section_is_found(tmp_path):
    path = write_extrinsics(tmp_path / 'ext.yaml', T_TRUE, node='/**')
    assert np.allclose(cc.load_extrinsic(path).T_base_camera, T_TRUE)


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    rc = main(['calib-check', '--sim', '--extrinsics', str(tmp_path / 'missing.yaml')])
    assert rc == 2
    assert 'missing.yaml' in capsys.readouterr().err
    ext = write_extrinsics(tmp_path / 'ext.yaml', T_TRUE)
    rc = main(['calib-check', '--frames', str(tmp_path / 'none.yaml'), '--extrinsics', str(ext)])
    assert rc == 2
    assert 'none.yaml: cannot read' in capsys.readouterr().err
    rc = main(['calib-check', '--frames', 'f.yaml', '--save-frames', str(tmp_path / 'x')])
    assert rc == 2
    assert 'use it with --sim' in capsys.readouterr().err
    assert main(['calib-check', '--sim', '--sim-frames', '0', '--extrinsics', str(ext)]) == 2
    assert 'at least 1' in capsys.readouterr().err


def test_sim_camera_that_sees_no_object_is_refused(tmp_path, capsys):
    # Looking straight up from below the table: nothing to measure.
    up = look_at_base([0.5, 0.0, -0.3], [0.5, 0.01, 2.0])
    ext = write_extrinsics(tmp_path / 'ext.yaml', up)
    rc = main(['calib-check', '--sim', '--sim-frames', '1', '--extrinsics', str(ext)])
    assert rc == 2
    assert 'no object is visible' in capsys.readouterr().err
