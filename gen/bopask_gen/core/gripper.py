"""Franka Emika hand geometry and the 5-keypoint grasp representation.

Gripper frame (the TCP): origin midway between the fingertips, z along the approach
direction (from the palm toward the object), y along the finger-closing line pointing to
the *left* finger, x = y cross z. The generator flips a grasp by 180 degrees about z when
needed so that the left finger is the one that appears left (smaller u) in the image.
Keypoint order: centre, left base, right base, left tip, right tip.
"""

import numpy as np

from bopask_gen.core.transforms import transform_points

MAX_OPENING = 0.08
'''Maximum distance between the Franka fingers, metres.'''
FINGER_LENGTH = 0.05
'''Distance along z from a finger's base (at the palm) to its tip, metres.'''
FINGER_WIDTH = 0.02
'''Finger extent along x, metres.'''
FINGER_THICKNESS = 0.01
'''Finger extent along y, metres.'''
PALM_SIZE = (0.05, 0.20, 0.06)
'''Hand body (x, y, z) behind the finger bases, metres.'''
WRIST_SIZE = (0.10, 0.10, 0.10)
'''The arm's last links (x, y, z) behind the palm, metres: the Panda's wrist is wider across
the finger line than the palm, and knocks over a tall neighbour of a low object.'''
FLANGE_TO_TCP = 0.1034
'''Distance from the arm's flange to the TCP along z, metres (Franka documentation).'''
KEYPOINT_NAMES = ('centre', 'left_base', 'right_base', 'left_tip', 'right_tip')


def grasp_keypoints_local(width, finger_length=FINGER_LENGTH):
    """Return the 5 keypoints in the gripper frame, (5, 3) metres.

    ``width`` may also be an (N,) array of openings; the result is then (N, 5, 3).
    """
    h = np.asarray(width, dtype=float) / 2.0
    kp = np.zeros(h.shape + (5, 3))
    kp[..., 1:3, 2] = -finger_length      # finger bases
    kp[..., [1, 3], 1] = h[..., None]     # left base, left tip
    kp[..., [2, 4], 1] = -h[..., None]    # right base, right tip
    return kp


def grasp_keypoints(T_gripper, width, finger_length=FINGER_LENGTH):
    """Return the 5 keypoints of a grasp pose in the pose's parent frame, (5, 3) metres."""
    return transform_points(T_gripper, grasp_keypoints_local(width, finger_length))


def gripper_boxes(width, finger_length=FINGER_LENGTH):
    """Return the hand as boxes ``[(extents (3,), T_box_in_gripper 4x4), ...]`` for collision.

    Two fingers (outside the grasp width), the palm behind the finger bases and the wrist
    behind the palm.
    """
    boxes = []
    for side in (1.0, -1.0):
        T = np.eye(4)
        T[:3, 3] = [0.0, side * (width / 2.0 + FINGER_THICKNESS / 2.0), -finger_length / 2.0]
        boxes.append((np.array([FINGER_WIDTH, FINGER_THICKNESS, finger_length]), T))
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, -finger_length - PALM_SIZE[2] / 2.0]
    boxes.append((np.array(PALM_SIZE), T))
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, -finger_length - PALM_SIZE[2] - WRIST_SIZE[2] / 2.0]
    boxes.append((np.array(WRIST_SIZE), T))
    return boxes


def approach_tilt_deg(T_gripper):
    """Angle in degrees between a grasp's approach (its z axis) and straight down (-z)."""
    return float(np.degrees(np.arccos(np.clip(-np.asarray(T_gripper)[2, 2], -1.0, 1.0))))


def flip_about_approach(T_gripper):
    """Return the same grasp rotated 180 degrees about its approach axis (fingers swapped)."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return np.asarray(T_gripper, dtype=float) @ flip
