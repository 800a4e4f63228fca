"""Trajectory task: a collision-free path moving object A to the location of object B.

Planning happens in the world frame (z up) on the position of A's centre, with A moved by
pure translation. A's bounding volume is its models_info cuboid at the GT pose (an fcl Box);
obstacles are the other objects' decimated meshes (fcl BVH, B included) and the table (A may
not go lower than where it rests). Steps:

1. Lift: A is raised straight up until it touches nothing; objects touching A at its GT
   pose (clutter contact, slightly overlapping annotations) are ignored on this segment.
2. OMPL RRT (goal bias 0.1, edges <= ``RRT_RANGE``) in the box above the table that spans
   all objects plus a margin, from the lifted position to the goal above B (A's bottom
   ``GOAL_CLEARANCE`` above B's top, centred over B's centre; when a neighbour of B leaves
   A no room there, over the point of B nearest its centre where A is free and that the
   camera sees on B, see ``goal_above``). Planning stops after
   ``MAX_ITERATIONS`` iterations (deterministic: OMPL's global seed is set from ``rng``
   before every plan) or, as a safety net, after ``TIME_LIMIT``.
3. OMPL's ``reduceVertices`` and ``partialShortcutPath`` (collision-checked shortcuts), then
   Ramer-Douglas-Peucker (``rdp``, numpy); every simplified segment is re-checked and the
   tolerance halved if one collides. The lift segment is kept as it is.

Result: (M, 3) camera-frame waypoints, first = A's centre, then the collision-free path of
A's centre ending at the goal above B, and last the *delivery point* straight below the
goal at B's highest point (normally the centre of B's top: B's centre in x, y). The answer
must end on B (the evaluator checks that the last point falls in B's mask), and the point
above B projects well outside it.

The evaluator also fails a path with a waypoint inside another object's mask, which a path
flying *over* an object in 3D can do in 2D. Such plans are rejected and replanned with the
next seed, up to ``PLAN_ATTEMPTS`` times, so that the ground truth passes its own metric.
"""

import time

import cv2
import fcl
import numpy as np
from ompl import base as ob
from ompl import geometric as og
from ompl import util as ou

from bopask_gen.core.camera import pixels_inside, project_points
from bopask_gen.core.transforms import transform_points
from bopask_gen.generator.grasps import _fcl_scene

# Probability of sampling the goal in RRT (the paper's 10 %).
GOAL_BIAS = 0.1
# Planner time cap per pair, seconds (a safety net; the iteration cap normally stops it).
TIME_LIMIT = 0.25
# RRT iteration cap (deterministic termination).
MAX_ITERATIONS = 1500
# Distance between collision checks along a motion, metres.
CHECK_RESOLUTION = 0.01
# Gap between A's bottom and B's top at the goal, metres.
GOAL_CLEARANCE = 0.01
# Workspace extends this far beyond the objects horizontally and above them, metres.
WORKSPACE_MARGIN = 0.08
# Increment of the initial straight lift, metres.
LIFT_STEP = 0.01
# Give up when A is not free after this much lift, metres.
MAX_LIFT = 0.4
# Ramer-Douglas-Peucker tolerance, metres.
RDP_EPSILON = 0.01
# Plans tried per pair until no interior waypoint projects onto another object.
PLAN_ATTEMPTS = 4
# Clearance in pixels between an interior waypoint and another object's visible mask.
MASK_CLEARANCE_PX = 6
# Longest RRT edge, metres (short edges keep the tree, and so the path, near the objects).
RRT_RANGE = 0.06
# A may sink this far below its start height (plane noise), metres.
TABLE_MARGIN = 0.002
# An off-centre delivery point lies at least this deep inside B's visible mask, pixels (so
# that rounding the answer's coordinates keeps it on B).
DELIVERY_DEPTH_PX = 2

# OMPL prints every plan's INFO lines otherwise (process-wide setting).
ou.setLogLevel(ou.LOG_WARN)


def rdp(points, epsilon):
    """Ramer-Douglas-Peucker simplification of an (N, D) polyline; keeps both ends."""
    points = np.asarray(points, dtype=float)
    if len(points) < 3:
        return points.copy()
    keep = np.zeros(len(points), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        a, b = points[i], points[j]
        seg = b - a
        rel = points[i + 1:j] - a
        length = np.linalg.norm(seg)
        if length < 1e-12:
            dist = np.linalg.norm(rel, axis=1)
        else:
            proj = np.clip(rel @ seg / length**2, 0.0, 1.0)
            dist = np.linalg.norm(rel - proj[:, None] * seg, axis=1)
        k = int(np.argmax(dist))
        if dist[k] > epsilon:
            m = i + 1 + k
            keep[m] = True
            stack.extend([(i, m), (m, j)])
    return points[keep]


class _MovingBox:
    """Collision model of object A translated in the world frame."""

    def __init__(self, scene, obj_a):
        info = obj_a.info
        self.scene = scene
        # The cuboid moves with A's orientation; its centre is A's bbox centre.
        self.R_box = obj_a.T_m2c[:3, :3]
        self.box = fcl.Box(*info.bbox_size)
        corners = scene.to_world(transform_points(obj_a.T_m2c, info.cuboid_corners()))
        self.start_w = obj_a.centre_world.copy()
        self.half_lo = self.start_w - corners.min(axis=0)  # centre -> AABB low corner (world)
        self.half_hi = corners.max(axis=0) - self.start_w
        # Lowest allowed centre height: resting on the table, or the start if already lower.
        self.min_centre_z = min(self.start_w[2], self.half_lo[2]) - TABLE_MARGIN
        corners_cam = scene.to_cam(corners)
        self.half_cam_lo = obj_a.centre_cam - corners_cam.min(axis=0)
        self.half_cam_hi = corners_cam.max(axis=0) - obj_a.centre_cam
        T_w2c = scene.T_w2c
        self.R_w2c, self.t_w2c = T_w2c[:3, :3].copy(), T_w2c[:3, 3].copy()
        obstacles = [(k, v) for k, v in _fcl_scene(scene).items() if k != obj_a.gt_index]
        self.obstacle_ids = [k for k, _ in obstacles]
        self.obstacle_objs = [v[0] for _, v in obstacles]
        bounds = np.array([v[1] for _, v in obstacles]).reshape(-1, 2, 3)
        # Box centre c overlaps obstacle AABB iff lo_k - half_hi < c < hi_k + half_lo.
        self.centre_lo = bounds[:, 0] - self.half_cam_hi
        self.centre_hi = bounds[:, 1] + self.half_cam_lo
        self.request = fcl.CollisionRequest()
        self.checks = 0

    def hits(self, p_world, ignore=()):
        """Return the gt indices A's box hits with its centre at ``p_world``."""
        self.checks += 1
        c = self.R_w2c @ p_world + self.t_w2c
        near = np.nonzero(np.all((c > self.centre_lo) & (c < self.centre_hi), axis=1))[0]
        out = set()
        if len(near):
            box = fcl.CollisionObject(self.box, fcl.Transform(self.R_box, c))
            for k in near:
                gt_index = self.obstacle_ids[k]
                if gt_index in ignore:
                    continue
                if fcl.collide(box, self.obstacle_objs[k], self.request, fcl.CollisionResult()):
                    out.add(gt_index)
        return out

    def valid(self, p_world, ignore=()):
        """True when A's box at ``p_world`` is above the table and hits nothing."""
        return p_world[2] >= self.min_centre_z and not self.hits(p_world, ignore)

    def segment_valid(self, a, b, ignore=()):
        """Check a straight motion at CHECK_RESOLUTION spacing (ends included)."""
        n = max(int(np.ceil(np.linalg.norm(b - a) / CHECK_RESOLUTION)), 1)
        return all(self.valid(a + (b - a) * t, ignore) for t in np.linspace(0.0, 1.0, n + 1))


def _lift(mover):
    touching = mover.hits(mover.start_w)
    p = mover.start_w.copy()
    lifted = 0.0
    while mover.hits(p):
        if lifted >= MAX_LIFT or not mover.valid(p, ignore=touching):
            return None
        p = p + np.array([0.0, 0.0, LIFT_STEP])
        lifted += LIFT_STEP
    return p


def _workspace(scene, mover, goal):
    verts = np.vstack([scene.to_world(o.mesh_cam.vertices) for o in scene.objects])
    lo = verts.min(axis=0) - WORKSPACE_MARGIN
    hi = verts.max(axis=0) + WORKSPACE_MARGIN
    hi[2] = max(hi[2], goal[2]) + mover.half_hi[2] + WORKSPACE_MARGIN
    lo[2] = mover.min_centre_z
    return lo, hi


def _rrt(mover, start, goal, lo, hi, seed):
    level = ou.getLogLevel()
    ou.setLogLevel(ou.LOG_NONE)  # OMPL logs an error when the seed is reset; it still works
    ou.RNG.setSeed(int(seed))
    ou.setLogLevel(level)
    space = ob.RealVectorStateSpace(3)
    bounds = ob.RealVectorBounds(3)
    for i in range(3):
        bounds.setLow(i, float(lo[i]))
        bounds.setHigh(i, float(hi[i]))
    space.setBounds(bounds)
    si = ob.SpaceInformation(space)
    si.setStateValidityChecker(lambda s: mover.valid(np.array((s[0], s[1], s[2]))))
    si.setStateValidityCheckingResolution(CHECK_RESOLUTION / space.getMaximumExtent())
    si.setup()
    s0, s1 = space.allocState(), space.allocState()
    for i in range(3):
        s0[i], s1[i] = float(start[i]), float(goal[i])
    pdef = ob.ProblemDefinition(si)
    pdef.setStartAndGoalStates(s0, s1, 1e-3)
    planner = og.RRT(si)
    planner.setGoalBias(GOAL_BIAS)
    planner.setRange(RRT_RANGE)
    planner.setProblemDefinition(pdef)
    planner.setup()
    count = [0]
    deadline = time.monotonic() + TIME_LIMIT

    def stop():
        count[0] += 1
        return count[0] > MAX_ITERATIONS or time.monotonic() > deadline

    planner.solve(ob.PlannerTerminationCondition(stop))
    if not pdef.hasExactSolution():
        return None
    path = pdef.getSolutionPath()
    simplifier = og.PathSimplifier(si)
    simplifier.reduceVertices(path)
    simplifier.partialShortcutPath(path)
    return np.array([[s[0], s[1], s[2]] for s in path.getStates()])


def plan_trajectory(scene, obj_a, obj_b, rng, clear_of_masks=True):
    """Return (M, 3) camera-frame waypoints from A's centre to B's top, or None.

    All segments but the last are collision-free for A's box; the last descends from the
    goal above B to the delivery point on B's top (see the module docstring).
    ``clear_of_masks`` replans paths whose waypoints project onto a third object (dataset
    answers must pass the image metric; a robot only needs the 3D path to be free).

    None when A cannot be lifted free, A fits nowhere over B (``goal_above``) or RRT finds
    no path.
    """
    if obj_a.gt_index == obj_b.gt_index:
        raise ValueError(f'trajectory needs two different objects, got gt {obj_a.gt_index} twice')
    for _ in range(PLAN_ATTEMPTS):
        path = _plan_once(scene, obj_a, obj_b, int(rng.integers(1, 2**31 - 1)))
        if path is None:
            return None
        if not clear_of_masks or waypoints_clear_of_other_objects(scene, path, obj_a, obj_b):
            return path
    return None


def waypoints_clear_of_other_objects(scene, path_cam, obj_a, obj_b):
    """True when no interior waypoint projects within MASK_CLEARANCE_PX of another object."""
    from bopask_gen.generator.scene import mask_visib

    uv = np.round(project_points(path_cam[1:-1], scene.K)).astype(int)
    inside = pixels_inside(uv, scene.width, scene.height)
    uv = uv[inside]
    kernel = np.ones((2 * MASK_CLEARANCE_PX + 1,) * 2, np.uint8)
    for obj in scene.objects:
        if obj.gt_index in (obj_a.gt_index, obj_b.gt_index) or not len(uv):
            continue
        near = cv2.dilate(mask_visib(scene, obj).astype(np.uint8), kernel)
        if np.any(near[uv[:, 1], uv[:, 0]]):
            return False
    return True


def _plan_once(scene, obj_a, obj_b, seed):
    """One RRT plan (see the module docstring); None when no path is found."""
    mover = _MovingBox(scene, obj_a)
    lifted = _lift(mover)
    goal = None if lifted is None else goal_above(scene, mover, obj_b)
    if goal is None:
        return None
    b_top = float(np.max(scene.height_above_plane(obj_b.mesh_cam.vertices)))
    lo, hi = _workspace(scene, mover, goal)
    middle = _rrt(mover, lifted, goal, lo, hi, seed)
    if middle is None:
        return None
    # OMPL stops within its goal tolerance (1 mm): end exactly on the goal.
    if len(middle) < 2:
        middle = np.vstack([middle, goal])
    middle[-1] = goal
    if not mover.segment_valid(middle[-2], goal):
        return None
    # The lift (start -> middle[0]) stays as planned; RRT's part is simplified.
    path = np.vstack([mover.start_w[None], _simplify(mover, middle)])
    if np.linalg.norm(path[1] - path[0]) < 1e-9:
        path = path[1:]
    # World z is the height above the table (the world origin lies on the plane).
    delivery = np.array([goal[0], goal[1], b_top])
    return scene.to_cam(np.vstack([path, delivery]))


def goal_above(scene, mover, obj_b):
    """Return the world-frame goal of A's centre above B, or None when A fits nowhere over B.

    A's bottom is ``GOAL_CLEARANCE`` above B's top. Over B's centre when A's box is free
    there; otherwise (a neighbour of B within A's half-width of B's centre, e.g. a flat B
    beside a tall object) over the nearest point of B's footprint (B's model vertices, seen
    from above) where A's box is free and whose delivery point on B's top lies on B's
    visible mask -- the path must still end on B in the image, and on a part of B the
    camera sees rather than on what hides it.
    """
    b_top = float(np.max(scene.height_above_plane(obj_b.mesh_cam.vertices)))
    z = b_top + GOAL_CLEARANCE + mover.half_lo[2]
    centre = np.array([obj_b.centre_world[0], obj_b.centre_world[1], z])
    if mover.valid(centre):
        return centre
    from bopask_gen.generator.scene import mask_visib

    xy = scene.to_world(obj_b.mesh_cam.vertices)[:, :2]
    xy = xy[np.argsort(np.linalg.norm(xy - centre[:2], axis=1), kind='stable')]
    delivery = np.column_stack([xy, np.full(len(xy), b_top)])
    uv = np.round(project_points(scene.to_cam(delivery), scene.K)).astype(int)
    kernel = np.ones((2 * DELIVERY_DEPTH_PX + 1,) * 2, np.uint8)
    visible = cv2.erode(mask_visib(scene, obj_b).astype(np.uint8), kernel).astype(bool)
    on_b = pixels_inside(uv, scene.width, scene.height)
    on_b[on_b] = visible[uv[on_b, 1], uv[on_b, 0]]
    for x, y in xy[on_b]:
        goal = np.array([x, y, z])
        if mover.valid(goal):
            return goal
    return None


def _simplify(mover, path):
    """RDP with a tolerance halved until every new segment is collision-free."""
    eps = RDP_EPSILON
    for _ in range(4):
        simple = rdp(path, eps)
        if all(mover.segment_valid(a, b) for a, b in zip(simple[:-1], simple[1:])):
            return simple
        eps /= 2.0
    return path
