"""Rearrangement task: which objects must be moved before the target can be grasped.

"Good" grasps of the target are its antipodal grasps (grasps.iter_checked_grasps: score
order, near-duplicates removed, the same candidates as grasps.top_grasps) that are free of
the table and of the target itself, i.e. grasps that only other objects can block. If one
of them is also free of every other object, nothing has to move (``[]``; exactly when
top_grasps finds a grasp). Otherwise the answer is the smallest set of neighbours whose
removal frees one of the ``n_good`` best good grasps (ties broken by grasp score): the
objects that block it. A target without any good grasp gives ``None`` (no question).
"""

import warnings

import cv2
import numpy as np

from bopask_gen.core.camera import project_points
from bopask_gen.core.errors import BopFormatError
from bopask_gen.generator import grasps
from bopask_gen.generator.scene import mask_visib

# How many good grasps of the target are examined.
GOOD_GRASPS = 20


def find_blockers(scene, obj, rng, n_good=GOOD_GRASPS):
    """Return the gt indices of the objects to move first, ``[]`` if none, ``None`` if ungraspable.

    See the module docstring for the rule.
    """
    best = None
    n = 0
    for _, hits in grasps.iter_checked_grasps(scene, obj, rng):
        if obj.gt_index in hits or grasps.TABLE in hits:
            continue  # not a good grasp: no rearrangement can free it
        if not hits:
            return []  # consistent with grasps.top_grasps: it would return this grasp
        if n < n_good and (best is None or len(hits) < len(best)):
            best = hits
        n += 1
    return None if best is None else sorted(best)


def blocker_point_px(scene, blocker_obj):
    """Return a pixel (2,) on the blocker's visible mask: its most interior point.

    The point maximising the distance to the mask border (so it stays on the object under
    small annotation errors); an empty or missing mask falls back to the projected centre.
    """
    try:
        mask = mask_visib(scene, blocker_obj)
    except BopFormatError as exc:  # a missing mask only loses the snapping
        warnings.warn(f'{exc}; using the projected centre of gt {blocker_obj.gt_index}',
                      stacklevel=2)
        mask = None
    if mask is None or not mask.any():
        return project_points(blocker_obj.centre_cam[None], scene.K)[0]
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    v, u = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([float(u), float(v)])
