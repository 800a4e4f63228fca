import numpy as np
import pytest
from scipy.spatial.transform import Rotation
import transforms3d

from bopask_gen.core.transforms import (
    invert_transform,
    make_transform,
    matrix_from_quat_xyzw,
    quat_wxyz_to_xyzw,
    quat_xyzw_from_matrix,
    quat_xyzw_to_wxyz,
    rotation_angle_between,
    transform_from_xyz_quat_xyzw,
    transform_points,
    xyz_quat_xyzw_from_transform,
)


def random_transform(seed):
    rng = np.random.default_rng(seed)
    return make_transform(Rotation.random(random_state=seed).as_matrix(), rng.normal(size=3))


def test_inverse_composes_to_identity():
    T = random_transform(1)
    np.testing.assert_allclose(T @ invert_transform(T), np.eye(4), atol=1e-12)


def test_transform_points_matches_homogeneous_product():
    T = random_transform(2)
    pts = np.random.default_rng(3).normal(size=(7, 3))
    homog = (T @ np.c_[pts, np.ones(7)].T).T[:, :3]
    np.testing.assert_allclose(transform_points(T, pts), homog, atol=1e-12)


def test_ros_quaternion_order_is_xyzw_and_agrees_with_transforms3d():
    R = Rotation.from_euler('z', 90, degrees=True).as_matrix()
    q = quat_xyzw_from_matrix(R)
    np.testing.assert_allclose(q, [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    wxyz = transforms3d.quaternions.mat2quat(R)
    np.testing.assert_allclose(quat_xyzw_to_wxyz(q), wxyz, atol=1e-12)
    np.testing.assert_allclose(quat_wxyz_to_xyzw(wxyz), q, atol=1e-12)
    np.testing.assert_allclose(matrix_from_quat_xyzw(q), R, atol=1e-12)


def test_pose_round_trip_and_angle():
    T = random_transform(4)
    xyz, q = xyz_quat_xyzw_from_transform(T)
    np.testing.assert_allclose(transform_from_xyz_quat_xyzw(xyz, q), T, atol=1e-12)
    R2 = T[:3, :3] @ Rotation.from_euler('x', 30, degrees=True).as_matrix()
    assert rotation_angle_between(T, R2) == pytest.approx(np.deg2rad(30))
