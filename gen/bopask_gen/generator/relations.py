"""Spatial and depth relations between two objects, from their 3D centres.

Spatial axes use world-frame bbox centres (scene.py: x = right in the image, y = away from
the camera = behind, z = up). Each relation is stated for object ``a`` relative to ``b``:
``('left', True)`` means "a is left of b". Only unambiguous axes are returned: the centres
must differ by more than ``margin`` along the axis. Depth compares the Euclidean distances of
the centres from the camera centre.
"""

import numpy as np

# (relation word, world axis, sign): the word is true when sign * (a - b)[axis] > 0.
AXES = (('left', 0, -1.0), ('front', 1, -1.0), ('above', 2, 1.0))


def spatial_relations(scene, a, b, margin=0.03):
    """Return ``[(word, a_relation_b), ...]`` for the unambiguous axes among left/front/above.

    ``word`` is 'left' (a.x < b.x), 'front' (a.y < b.y, nearer the camera along the table)
    or 'above' (a.z > b.z); axes whose centre difference is within ``margin`` are left out.
    """
    diff = np.asarray(a.centre_world, dtype=float) - np.asarray(b.centre_world, dtype=float)
    out = []
    for word, axis, sign in AXES:
        if abs(diff[axis]) > margin:
            out.append((word, bool(sign * diff[axis] > 0)))
    return out


def depth_relation(scene, a, b, margin=0.03):
    """Return ``('closer', a_is_closer)`` or None when the camera distances differ <= margin."""
    da = float(np.linalg.norm(a.centre_cam))
    db = float(np.linalg.norm(b.centre_cam))
    if abs(da - db) <= margin:
        return None
    return ('closer', da < db)
