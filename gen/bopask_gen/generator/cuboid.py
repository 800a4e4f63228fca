"""Pose task: the 8 corners of an object's 3D bounding cuboid in the BOP-ASK order.

The cuboid is the models_info box (min_*, size_*) carried through the GT pose. Which face
is the bottom is decided in the world frame: of the box's three axes the one most aligned
with world up splits the corners into a lower (bottom) and an upper (top) face. The bottom
face is ordered counter-clockwise seen from above (world +z toward the viewer), starting
at its front-left corner (the corner whose direction from the face centre is closest to
world (-x, -y), i.e. left and toward the camera); the top face follows in the same order,
each top corner directly above (along the box edge) its bottom corner.
"""

import numpy as np

from bopask_gen.core.camera import project_points
from bopask_gen.core.transforms import transform_points

# Direction (atan2(y, x) in the world plane) of the starting corner: left (-x) and front (-y).
FRONT_LEFT_ANGLE = -0.75 * np.pi


def order_cuboid_corners(corners_model, T_m2c, T_c2w):
    """Return the indices (8,) of model-frame corners in the bottom-CCW-then-top order.

    ``corners_model`` is ObjectInfo.cuboid_corners() (index bits z y x).
    """
    corners_world = transform_points(T_c2w @ T_m2c, corners_model)
    R_m2w = (T_c2w @ T_m2c)[:3, :3]
    up_axis = int(np.argmax(np.abs(R_m2w[2, :])))
    bit = 1 << up_axis  # index bit of that model axis in the (z y x) corner numbering
    lower_is_set = R_m2w[2, up_axis] < 0  # the "1" side of that axis points down
    idx = np.arange(8)
    bottom = idx[((idx & bit) != 0) == lower_is_set]
    xy = corners_world[bottom, :2]
    ang = np.arctan2(*(xy - xy.mean(axis=0)).T[::-1])
    order = bottom[np.argsort(ang)]  # counter-clockwise seen from above (z toward viewer)
    ang_sorted = np.sort(ang)
    start = int(np.argmin(np.abs(np.angle(np.exp(1j * (ang_sorted - FRONT_LEFT_ANGLE))))))
    bottom_ccw = np.roll(order, -start)
    top = bottom_ccw ^ bit  # the corner across the up axis
    return np.concatenate([bottom_ccw, top])


def cuboid_corners_cam(scene, obj):
    """Return the object's 8 cuboid corners in the camera frame, (8, 3), in task order."""
    corners_model = obj.info.cuboid_corners()
    order = order_cuboid_corners(corners_model, obj.T_m2c, scene.T_c2w)
    return transform_points(obj.T_m2c, corners_model[order])


def cuboid_corners_world(scene, obj):
    """Return the 8 ordered cuboid corners in the world frame, (8, 3)."""
    return scene.to_world(cuboid_corners_cam(scene, obj))


def cuboid_points_px(scene, obj):
    """Return the 8 ordered cuboid corners projected to pixels, (8, 2)."""
    return project_points(cuboid_corners_cam(scene, obj), scene.K)
