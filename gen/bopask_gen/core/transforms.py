"""Rigid transforms as 4x4 numpy matrices, and quaternion conventions.

ROS messages store quaternions as (x, y, z, w); transforms3d uses (w, x, y, z). Every
conversion here names its order so the two never mix silently.
"""

import numpy as np
from scipy.spatial.transform import Rotation


def make_transform(rotation, translation):
    """Build a 4x4 homogeneous transform from a 3x3 rotation and a 3-vector."""
    T = np.zeros((4, 4))     # (np.eye: Python-level glue, a cost per call on hot paths)
    T[3, 3] = 1.0
    T[:3, :3] = np.asarray(rotation, dtype=float).reshape(3, 3)
    T[:3, 3] = np.asarray(translation, dtype=float).reshape(3)
    return T


def invert_transform(T):
    """Invert a rigid 4x4 transform without a general matrix inverse."""
    T = np.asarray(T, dtype=float)
    R = T[:3, :3]
    inv = np.zeros((4, 4))
    inv[3, 3] = 1.0
    inv[:3, :3] = R.T
    inv[:3, 3] = -R.T @ T[:3, 3]
    return inv


def transform_points(T, points):
    """Apply a 4x4 transform to an (N, 3) array of points."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    T = np.asarray(T, dtype=float)
    return points @ T[:3, :3].T + T[:3, 3]


def rotate_vectors(T, vectors):
    """Apply only the rotation of a 4x4 transform (or a 3x3 matrix) to (N, 3) vectors."""
    R = np.asarray(T, dtype=float)[:3, :3]
    return np.asarray(vectors, dtype=float).reshape(-1, 3) @ R.T


def quat_xyzw_from_matrix(rotation):
    """Return the ROS-order quaternion (x, y, z, w) of a rotation matrix (or 4x4 transform)."""
    R = np.asarray(rotation, dtype=float)[:3, :3]
    return Rotation.from_matrix(R).as_quat(canonical=True)


def matrix_from_quat_xyzw(quat_xyzw):
    """Return the 3x3 rotation of a ROS-order quaternion (x, y, z, w)."""
    return Rotation.from_quat(np.asarray(quat_xyzw, dtype=float)).as_matrix()


def quat_wxyz_to_xyzw(quat_wxyz):
    """Reorder a transforms3d/MuJoCo quaternion (w, x, y, z) to ROS order (x, y, z, w)."""
    w, x, y, z = quat_wxyz
    return np.array([x, y, z, w], dtype=float)


def quat_xyzw_to_wxyz(quat_xyzw):
    """Reorder a ROS quaternion (x, y, z, w) to transforms3d/MuJoCo order (w, x, y, z)."""
    x, y, z, w = quat_xyzw
    return np.array([w, x, y, z], dtype=float)


def transform_from_xyz_quat_xyzw(xyz, quat_xyzw):
    """Build a 4x4 transform from a position and a ROS-order quaternion."""
    return make_transform(matrix_from_quat_xyzw(quat_xyzw), xyz)


def xyz_quat_xyzw_from_transform(T):
    """Split a 4x4 transform into a position and a ROS-order quaternion."""
    T = np.asarray(T, dtype=float)
    return T[:3, 3].copy(), quat_xyzw_from_matrix(T)


def rotation_angle_between(R_a, R_b):
    """Return the angle in radians of the relative rotation between two rotations.

    From the relative rotation's axis part (sin) and trace (cos): accurate near zero too,
    and cheap enough for an IK solver's every iteration (no scipy Rotation built).
    """
    R = np.asarray(R_a, dtype=float)[:3, :3].T @ np.asarray(R_b, dtype=float)[:3, :3]
    s = np.linalg.norm([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return float(np.arctan2(s, np.trace(R) - 1.0))
