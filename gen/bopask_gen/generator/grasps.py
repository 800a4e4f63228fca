"""Grasp task: antipodal parallel-jaw (Franka hand) grasps on the object model.

Sampling (model frame, vectorised): surface points are drawn area-weighted on the
de-duplicated model; from each, a ray goes into the object along the inward normal
perturbed inside the friction cone (open3d RaycastingScene); its exit point is the second
contact. A pair is kept when both contact normals lie inside the friction cone of the
closing line and the width fits the hand (8 cm minus clearance). Each pair yields grasps
for several approach directions perpendicular to the closing line, starting from the one
closest to straight down (world -z) and turning toward the camera side.

Ranking (score in [0, 1], higher is better): approach from above, antipodal quality (how
deep both normals sit inside the friction cone) and closeness of the closing line to the
object's centre of mass (less torque when lifting), weighted 0.35 / 0.3 / 0.35.

Collision (``top_grasps`` / ``grasp_collides``): the hand boxes of core.gripper opened to
the grasp width plus a clearance are checked, at the grasp and at two pre-grasp poses 4 and
8 cm back along the approach, against the table plane (analytically, all box corners above
it) and against every object's decimated mesh with python-fcl (BVH per model built once per
process, posed per scene), including the target itself (the palm must not hit the object).
Results and candidates are cached per scene, so ``top_grasps`` and
``rearrangement.find_blockers`` share one sampling (the rng of the first call decides it).

Gripper frame: core.gripper (z = approach, y toward the left finger); the TCP sits
``TCP_DEPTH`` past the contact line so the contacts lie on the finger pads. The left finger
is the one with the smaller image u (grasps are flipped about z when needed).
"""

from dataclasses import dataclass, field
import functools

import fcl
import numpy as np
import open3d as o3d
import trimesh

from bopask_gen.core import gripper
from bopask_gen.core.camera import project_points
from bopask_gen.core.transforms import transform_points
from bopask_gen.generator.scene import clean_model_mesh, collision_model_mesh

# Half angle of the friction cone used for antipodality (mu ~ 0.27).
FRICTION_CONE = np.deg2rad(15.0)
# Extra opening on each side while approaching, metres (the hand opens to
# min(width + 2 * CLEARANCE, MAX_OPENING), as sim.pick does with its 2 cm margin).
CLEARANCE = 0.01
# Least opening margin per side: wider objects do not fit the hand, metres.
MIN_CLEARANCE = 0.005
# Distance from the contact line to the fingertips along the approach, metres.
TCP_DEPTH = 0.012
# Least contact-to-fingertip distance when a low grasp is raised off the table, metres
# (thin objects lying flat: the contacts stay on the finger pads).
MIN_TCP_DEPTH = 0.003
# Clearance kept between the raised fingertips and the table, metres.
TABLE_CLEARANCE = 0.002
# Thinner contact pairs are not labelled: 2-6 mm pinches (mug rims, scissor blades)
# failed in the physics check (bench/bench_sim.py), metres.
MIN_WIDTH = 0.008
# The hand may reach this far below the fitted plane (depth noise), metres.
TABLE_MARGIN = 0.002
# Rotations about the closing line away from the most top-down approach.
APPROACH_ANGLES = np.deg2rad([0.0, 30.0, -30.0, 60.0, -60.0, 90.0, -90.0])
# Score weights: approach from above, antipodality, centre-of-mass distance.
WEIGHTS = (0.35, 0.3, 0.35)
# At most this many distinct candidates are collision-checked per object (speed cap).
MAX_CHECKED = 300
# Pre-grasp offsets back along the approach that must be free too, metres.
APPROACH_CHECKS = (0.04, 0.08)
# Marker in ``grasp_collides`` results for a collision with the table.
TABLE = -1


@dataclass
class Grasp:
    """One parallel-jaw grasp of an object in the camera frame."""

    T_cam: np.ndarray
    width: float
    score: float
    keypoints_cam: np.ndarray
    keypoints_px: np.ndarray
    gt_index: int = -1
    contacts_cam: np.ndarray = field(default=None, repr=False)


@functools.lru_cache(maxsize=64)
def _model_raycaster(path, dataset):
    obj_id = int(path.rsplit('obj_', 1)[1].split('.')[0])
    mesh = clean_model_mesh(dataset, obj_id)
    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                     o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    com = mesh.center_mass if mesh.is_watertight else mesh.bounds.mean(axis=0)
    return rc, mesh, np.asarray(com, dtype=float)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def sample_antipodal_pairs(mesh, raycaster, rng, n_points):
    """Return model-frame antipodal pairs ``(p (N,3), q (N,3), quality (N,))``.

    ``quality`` in [0, 1]: 1 when both normals are aligned with the closing line, 0 at the
    edge of the friction cone.
    """
    points, faces = trimesh.sample.sample_surface(mesh, n_points,
                                                  seed=int(rng.integers(2**31 - 1)))
    normals = mesh.face_normals[faces]
    # Perturb the inward normal inside the cone: more varied, still antipodal pairs.
    jitter = rng.normal(size=(n_points, 3))
    jitter -= np.sum(jitter * normals, axis=1, keepdims=True) * normals
    jitter = _unit(jitter) * np.tan(FRICTION_CONE) * rng.uniform(0.0, 0.7, (n_points, 1))
    d = _unit(-normals + jitter)
    origins = points + d * 1e-4
    rays = o3d.core.Tensor(np.hstack([origins, d]).astype(np.float32))
    hit = raycaster.cast_rays(rays)
    t = hit['t_hit'].numpy().astype(float)
    prim = hit['primitive_ids'].numpy().astype(np.int64)
    ok = np.isfinite(t) & (t >= MIN_WIDTH) & (t <= gripper.MAX_OPENING - 2 * MIN_CLEARANCE)
    prim = np.where(ok, prim, 0)
    cos_p = np.sum(-normals * d, axis=1)
    cos_q = np.sum(mesh.face_normals[prim] * d, axis=1)
    cmin = np.minimum(cos_p, cos_q)
    ok &= cmin >= np.cos(FRICTION_CONE)
    q = origins + d * t[:, None]
    quality = (cmin - np.cos(FRICTION_CONE)) / (1.0 - np.cos(FRICTION_CONE))
    return points[ok], q[ok], np.clip(quality[ok], 0.0, 1.0)


def _approach_frames(y, down, view):
    """Return (N, A, 3, 3) rotations (columns x, y, z) for each closing axis and angle."""
    z0 = down - np.sum(down * y, axis=1, keepdims=True) * y
    steep = np.linalg.norm(z0, axis=1) < 0.3
    if np.any(steep):  # closing line nearly vertical: start from the camera side instead
        v = view[steep] - np.sum(view[steep] * y[steep], axis=1, keepdims=True) * y[steep]
        z0[steep] = v
    z0 = _unit(z0)
    w = np.cross(y, z0)
    cos, sin = np.cos(APPROACH_ANGLES), np.sin(APPROACH_ANGLES)
    z = cos[None, :, None] * z0[:, None] + sin[None, :, None] * w[:, None]
    yy = np.broadcast_to(y[:, None], z.shape)
    x = np.cross(yy, z)
    return np.stack([x, yy, z], axis=-1)


def _hand_corners_local(widths):
    """Return (N, 8 B, 3) corners of the B hand boxes, opened to ``widths``, gripper frame."""
    base = []
    for extents, T in gripper.gripper_boxes(0.0):
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        base.append(signs * extents / 2.0 + T[:3, 3])
    base = np.stack(base)  # (B, 8, 3): left finger, right finger, palm, wrist
    out = np.broadcast_to(base, (len(widths),) + base.shape).copy()
    out[:, 0, :, 1] += widths[:, None] / 2.0
    out[:, 1, :, 1] -= widths[:, None] / 2.0
    return out.reshape(len(widths), -1, 3)


@functools.lru_cache(maxsize=64)
def _hull_points_model(path, dataset, spacing=0.015, max_points=200):
    """Evenly spread points on the model's convex hull (model frame), for palm checks."""
    _, mesh, _ = _model_raycaster(path, dataset)
    hull = mesh.convex_hull
    count = int(np.clip(hull.area / spacing**2, 50, max_points))
    pts, _ = trimesh.sample.sample_surface_even(hull, count, seed=0)
    return np.vstack([pts, hull.vertices])


def _hull_points_cam(scene, obj):
    key = ('hull_points_cam', obj.gt_index)
    if key not in scene.cache:
        scene.cache[key] = transform_points(obj.T_m2c, _hull_points_model(
            str(scene.dataset.model_path(obj.obj_id)), scene.dataset))
    return scene.cache[key]


def palm_hits_own_object_batch(scene, obj, T_cam):
    """Return (N,) bools: the palm box (with clearance) holds a point of the object hull.

    A fast test of the common self-collision (a top grasp low on a tall object) for (N, 4, 4)
    grasp poses, run before the exact fcl check.
    """
    pts = _hull_points_cam(scene, obj)
    T_cam = np.asarray(T_cam, dtype=float).reshape(-1, 4, 4)
    local = np.matmul(pts[None] - T_cam[:, None, :3, 3], T_cam[:, :3, :3])  # (N, P, 3)
    local[..., 2] += gripper.FINGER_LENGTH + gripper.PALM_SIZE[2] / 2.0
    half = np.array(gripper.PALM_SIZE) / 2.0 + MIN_CLEARANCE
    return np.any(np.all(np.abs(local) < half, axis=2), axis=1)


def palm_hits_own_object(scene, grasp):
    """Return True when the palm of ``grasp`` enters its own object's convex hull."""
    obj = scene.object_by_gt(grasp.gt_index)
    return bool(palm_hits_own_object_batch(scene, obj, grasp.T_cam[None])[0])


def sample_grasps(scene, obj, rng, n_candidates=240):
    """Return antipodal grasp candidates of ``obj`` sorted by score (no collision check).

    ``n_candidates`` surface points are sampled; each surviving antipodal pair gives one
    grasp per approach angle (APPROACH_ANGLES).
    """
    rc, mesh, com = _model_raycaster(str(scene.dataset.model_path(obj.obj_id)), scene.dataset)
    p, q, quality = sample_antipodal_pairs(mesh, rc, rng, n_candidates)
    if len(p) == 0:
        return []
    pc, qc = transform_points(obj.T_m2c, p), transform_points(obj.T_m2c, q)
    centre = (pc + qc) / 2.0
    width = np.linalg.norm(qc - pc, axis=1)
    y = _unit(qc - pc)
    down = np.broadcast_to(-scene.up_cam, y.shape)
    frames = _approach_frames(y, down, _unit(centre))  # (N, A, 3, 3)
    n, a = frames.shape[:2]
    rot = frames.reshape(n * a, 3, 3)
    z = rot[:, :, 2]
    c_rep = np.repeat(centre, a, axis=0)
    w_rep = np.repeat(width, a)
    tcp = c_rep + TCP_DEPTH * z
    # Scores.
    s_app = np.clip(z @ -scene.up_cam, 0.0, 1.0)
    com_c = transform_points(obj.T_m2c, com[None])[0]
    v = com_c - centre
    perp = np.linalg.norm(v - np.sum(v * y, axis=1, keepdims=True) * y, axis=1)
    s_com = 1.0 - np.minimum(1.0, perp / (0.5 * obj.info.diameter))
    score = (WEIGHTS[0] * s_app + WEIGHTS[1] * np.repeat(quality, a)
             + WEIGHTS[2] * np.repeat(s_com, a))
    # The table cannot be moved. A hand reaching below it is raised back along the approach
    # while the contacts stay on the finger pads (thin objects lying flat); grasps that
    # still reach below the table are dropped.
    width_open = np.minimum(w_rep + 2 * CLEARANCE, gripper.MAX_OPENING)
    local = _hand_corners_local(width_open)
    above = _lowest_height(scene, rot, local, tcp)
    rise = np.clip(-(z @ scene.up_cam), 1e-6, None)  # height gained per metre moved back
    back = np.clip((TABLE_CLEARANCE - above) / rise, 0.0, None)
    back = np.where(back <= TCP_DEPTH - MIN_TCP_DEPTH, back, 0.0)
    tcp = tcp - back[:, None] * z
    above = _lowest_height(scene, rot, local, tcp)
    score = np.where(above >= -TABLE_MARGIN, score, -np.inf)
    T = np.broadcast_to(np.eye(4), (n * a, 4, 4)).copy()
    T[:, :3, :3] = rot
    T[:, :3, 3] = tcp
    # Left finger (+y) must appear left in the image: flip about z where it does not.
    lt = tcp + rot[:, :, 1] * (w_rep / 2.0)[:, None]
    rt = tcp - rot[:, :, 1] * (w_rep / 2.0)[:, None]
    flip = project_points(lt, scene.K)[:, 0] > project_points(rt, scene.K)[:, 0]
    T[flip, :3, :2] *= -1.0
    contacts = np.stack([np.repeat(pc, a, axis=0), np.repeat(qc, a, axis=0)], axis=1)
    kp_local = gripper.grasp_keypoints_local(w_rep)
    kp_cam = np.einsum('nij,nkj->nki', T[:, :3, :3], kp_local) + T[:, None, :3, 3]
    kp_px = project_points(kp_cam.reshape(-1, 3), scene.K).reshape(n * a, 5, 2)

    order = np.argsort(-score, kind='stable')
    order = order[np.isfinite(score[order])]
    return [Grasp(T_cam=T[i], width=float(w_rep[i]), score=float(score[i]),
                  keypoints_cam=kp_cam[i], keypoints_px=kp_px[i], gt_index=obj.gt_index,
                  contacts_cam=contacts[i]) for i in order]


def _lowest_height(scene, rot, local_corners, tcp):
    """Height above the table of the lowest hand corner for (N,) grasp poses, metres."""
    corners = np.einsum('nij,nkj->nki', rot, local_corners) + tcp[:, None]
    return np.min(corners @ scene.up_cam, axis=1) + scene.plane_cam[3]


def hand_corners_cam(grasp, clearance=CLEARANCE):
    """Return the (8 B, 3) corners of the opened hand boxes of a grasp in the camera frame."""
    width = min(grasp.width + 2 * clearance, gripper.MAX_OPENING)
    local = _hand_corners_local(np.array([width]))[0]
    return transform_points(grasp.T_cam, local)


@functools.lru_cache(maxsize=64)
def _model_bvh(path, dataset):
    obj_id = int(path.rsplit('obj_', 1)[1].split('.')[0])
    mesh = collision_model_mesh(dataset, obj_id)
    bvh = fcl.BVHModel()
    bvh.beginModel(len(mesh.vertices), len(mesh.faces))
    bvh.addSubModel(np.asarray(mesh.vertices, dtype=float), np.asarray(mesh.faces, dtype=int))
    bvh.endModel()
    return bvh


def _fcl_scene(scene):
    """Per-scene fcl objects: the per-model BVH (built once per process) at the GT pose."""
    if 'fcl_objects' not in scene.cache:
        objs = {}
        for o in scene.objects:
            bvh = _model_bvh(str(scene.dataset.model_path(o.obj_id)), scene.dataset)
            tf = fcl.Transform(o.T_m2c[:3, :3], o.T_m2c[:3, 3])
            objs[o.gt_index] = (fcl.CollisionObject(bvh, tf), o.mesh_cam.bounds)
        scene.cache['fcl_objects'] = objs
    return scene.cache['fcl_objects']


def hand_collision_objects(grasp, clearance=CLEARANCE):
    """Return fcl CollisionObjects of the opened hand boxes of a grasp (camera frame)."""
    width = min(grasp.width + 2 * clearance, gripper.MAX_OPENING)
    out = []
    for extents, T_box in gripper.gripper_boxes(width):
        T = grasp.T_cam @ T_box
        out.append(fcl.CollisionObject(fcl.Box(*extents), fcl.Transform(T[:3, :3], T[:3, 3])))
    return out


def _backed_off(grasp, distance):
    """The same grasp moved ``distance`` back along its approach (a pre-grasp pose)."""
    T = grasp.T_cam.copy()
    T[:3, 3] -= distance * T[:3, 2]
    return Grasp(T_cam=T, width=grasp.width, score=grasp.score,
                 keypoints_cam=grasp.keypoints_cam, keypoints_px=grasp.keypoints_px,
                 gt_index=grasp.gt_index)


def grasp_collides(scene, grasp, ignore_gt=(), approach=APPROACH_CHECKS):
    """Return the set of gt indices the opened hand hits (TABLE = -1 for the table).

    The hand is checked at the grasp and at the pre-grasp poses ``approach`` metres back
    along the approach direction (the straight approach must be free too). The grasp's own
    object is checked as well (the palm or the fingers must not enter it); pass its gt index
    in ``ignore_gt`` to skip it. An empty set means collision-free.
    """
    hits = set()
    request = fcl.CollisionRequest()
    for distance in (0.0,) + tuple(approach):
        pose = grasp if distance == 0.0 else _backed_off(grasp, distance)
        corners = hand_corners_cam(pose)
        if np.min(scene.height_above_plane(corners)) < -TABLE_MARGIN:
            hits.add(TABLE)
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        boxes = None
        for gt_index, (cobj, bounds) in _fcl_scene(scene).items():
            if gt_index in ignore_gt or gt_index in hits:
                continue
            if np.any(hi < bounds[0]) or np.any(lo > bounds[1]):
                continue  # disjoint bounding boxes: no contact possible
            boxes = hand_collision_objects(pose) if boxes is None else boxes
            for box in boxes:
                if fcl.collide(box, cobj, request, fcl.CollisionResult()):
                    hits.add(gt_index)
                    break
    return hits


class _Candidates:
    """Sorted candidates of one object with lazily computed collision results."""

    CHUNK = 16

    def __init__(self, grasps):
        self.grasps = grasps
        self.centres = np.array([g.T_cam[:3, 3] for g in grasps]).reshape(-1, 3)
        self.approaches = np.array([g.T_cam[:3, 2] for g in grasps]).reshape(-1, 3)
        self.palm = np.zeros(len(grasps), dtype=np.int8)  # 0 unknown, 1 hits, 2 clear
        self.hits = {}

    def hits_of(self, scene, obj, i):
        if i not in self.hits:
            if self.palm[i] == 0:  # palm test for the next chunk at once (vectorised)
                j = min(i + self.CHUNK, len(self.grasps))
                poses = np.array([g.T_cam for g in self.grasps[i:j]])
                self.palm[i:j] = np.where(palm_hits_own_object_batch(scene, obj, poses), 1, 2)
            # A grasp whose palm enters its own object is never good: skip the exact check.
            self.hits[i] = ({obj.gt_index} if self.palm[i] == 1
                            else grasp_collides(scene, self.grasps[i]))
        return self.hits[i]


def _candidates(scene, obj, rng):
    key = ('grasp_candidates', obj.gt_index)
    if key not in scene.cache:
        scene.cache[key] = _Candidates(sample_grasps(scene, obj, rng))
    return scene.cache[key]


def iter_checked_grasps(scene, obj, rng, max_checked=MAX_CHECKED, dist=0.01, cos_angle=0.94):
    """Yield ``(grasp, hits)`` in score order (hits as in grasp_collides, cached per scene).

    Near-duplicates of already yielded grasps (centre within ``dist``, approach within
    ``acos(cos_angle)`` ~ 20 degrees) are skipped so that the top grasps are distinct. A grasp
    whose palm enters its own object gets ``{own gt index}`` without the exact check of the
    other objects. The candidates are sampled with ``rng`` on the first call per scene.
    """
    cands = _candidates(scene, obj, rng)
    chosen = np.zeros(len(cands.grasps), dtype=bool)
    m = 0
    for i, g in enumerate(cands.grasps):
        if m >= max_checked:
            return
        if m:
            near = np.sum((cands.centres[chosen] - cands.centres[i]) ** 2, axis=1) < dist**2
            if np.any(near & (cands.approaches[chosen] @ cands.approaches[i] > cos_angle)):
                continue
        chosen[i] = True
        m += 1
        yield g, cands.hits_of(scene, obj, i)


def top_grasps(scene, obj, rng, k=5, ignore_objects=()):
    """Return up to ``k`` collision-free grasps of ``obj``, best first.

    Free = no hit with the table, the object itself or any other object except the gt
    indices in ``ignore_objects`` (e.g. objects assumed moved away).
    """
    ignore = set(ignore_objects)
    out = []
    for g, hits in iter_checked_grasps(scene, obj, rng):
        if not (hits - ignore):
            out.append(g)
            if len(out) >= k:
                break
    return out
