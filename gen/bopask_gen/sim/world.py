"""A MuJoCo tabletop: Franka Panda, 3-8 YCB-Video objects and a RealSense-like RGB-D camera.

World frame: origin at the centre of the table top, z up. The Panda's base stands on the
table at ``BASE_POS`` (facing +x); objects are dropped with physics inside
``OBJECT_REGION`` (within the arm's reach) and simulated until they rest. The camera
(640x480, fovy 58 degrees) looks at the objects from a random pose on the side opposite the
robot. Objects carry BOP YCB-Video ids (``assets.YCBV_OBJECTS``); their body frame is the
model frame (mesh re-centred at its bbox centre, metres).

API (all poses 4x4 numpy, metres, world frame unless named otherwise)::

    world = World(seed=0)                   # random objects (3-8), drop, random camera
    world = World(obj_ids=[1, 5, 21], seed=3, camera=False)   # no renderer (physics only)
    world = World(placements=[Placement(obj_id, T_world_obj, mesh=None)], base_pos=...)
    world.objects                           # [SimObject(index, obj_id, name, body, mesh, ...)]
    world.object_pose(i) / world.object_poses()  # T_world_obj / [(obj_id, T_world_obj)]
    world.set_object_pose(i, T_world_obj)   # teleport (velocity zeroed)
    world.T_world_base                      # Panda base (panda_link0) pose
    world.K, world.width, world.height      # intrinsics (core.camera.intrinsics_from_fovy)
    world.T_world_camera                    # camera OPTICAL frame (x right, y down, z fwd)
    world.set_camera_pose(T_world_camera) / world.look_at(eye, target)
    world.randomize_camera(rng=None)
    world.render_rgb()                      # uint8 HxWx3
    world.render_depth()                    # float32 HxW metres along z, 0 = nothing
    world.render_segmentation()             # int32 HxW object index, -1 = not an object
    world.render_object_mask(i)             # bool HxW full silhouette of object i alone
    world.set_arm_targets(q7)               # position targets, radians (clipped to limits)
    world.set_gripper_opening(w)            # metres 0..0.08; fingers move at GRIPPER_SPEED
    world.step(n=1)                         # n physics steps of world.dt seconds
    world.arm_joint_positions()             # (7,) radians; arm_joint_velocities() rad/s
    world.arm_targets()                     # (7,) current position targets
    world.gripper_opening()                 # metres between the fingers
    world.tcp_pose()                        # T_world_tcp (core.gripper frame)
    world.execute_joint_path(path)          # smooth time-scaled motion through (M, 7) path
    world.reset_robot(q7, opening)          # teleport the arm (targets included)
    world.close()                           # free the renderer (also a context manager)

Actuators are addressed by name (``robot.ARM_ACTUATORS``, ``robot.GRIPPER_ACTUATOR``). The
simulation only advances in ``step`` / ``execute_joint_path`` (no thread of its own): a ROS
node owns one World and steps it from its timer. IK: ``sim.ik.PandaIK(world.T_world_base)``;
a scripted pick: ``sim.pick.execute_pick``. Objects render with their real mesh and collide
through convex parts (``sim.collision``). Import this module before anything imports mujoco
(it picks the headless GL backend, ``sim.backend``).
"""

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull
import trimesh

from bopask_gen.core.camera import intrinsics_from_fovy
from bopask_gen.core.gripper import MAX_OPENING
from bopask_gen.core.transforms import make_transform
from bopask_gen.sim import backend, robot
from bopask_gen.sim.assets import object_mesh, YCBV_COLOURS, YCBV_MASSES_KG, YCBV_OBJECTS
from bopask_gen.sim.collision import ycbv_parts

backend.ensure_gl_backend()
import mujoco  # noqa: E402  (MUJOCO_GL must be set first)

TABLE_HALF_SIZE = (0.6, 0.45, 0.02)
'''Table top half extents (x, y, thickness/2), metres; its top surface is z = 0.'''
TABLE_HEIGHT = 0.75
BASE_POS = (-0.5, 0.0, 0.0)
'''Panda base (panda_link0) position on the table; the arm faces +x.'''
OBJECT_REGION = ((-0.22, 0.15), (-0.25, 0.25))
'''(x range, y range) where object centres are dropped: 0.28-0.70 m from the base.'''
WIDTH, HEIGHT, FOVY_DEG = 640, 480, 58.0
CAMERA_NAME = 'rgbd'
GRIPPER_SPEED = 0.1
'''Finger opening speed limit, m/s (the Franka hand's maximum).'''
SETTLE_TIME = 2.5
'''Maximum simulated seconds to let dropped objects come to rest.'''
REST_SPEED = 0.005
'''Objects count as resting when every body speed is below this (m/s and rad/s).'''
COLLISION_GROUP = 3
'''Geom group of the collision-only parts (hidden in renders).'''
MJCAM_FROM_OPTICAL = np.diag([1.0, -1.0, -1.0, 1.0])
'''MuJoCo cameras look along -z with y up; the optical frame looks along +z with y down.'''


@dataclass
class SimObject:
    """One object of the world."""

    index: int
    obj_id: int
    name: str
    body: str
    mesh: trimesh.Trimesh  # model frame = body frame, metres
    mass: float
    colour: tuple
    parts: list = None  # convex collision parts [(verts, faces)]; None = the mesh's hull


@dataclass
class Placement:
    """An object to put at a given pose (``World(placements=...)``)."""

    obj_id: int
    T_world_obj: np.ndarray
    mesh: trimesh.Trimesh = None  # model frame, metres; None = the YCB-V mesh of obj_id
    mass: float = None            # kg; None = from the hull volume
    parts: list = None            # convex collision parts; None = shipped YCB-V parts when
    #                               mesh is None, else the mesh's convex hull


class WorldError(RuntimeError):
    """The world cannot be built as asked (bad ids, objects that do not fit or rest)."""


def look_at_optical(eye, target, up=(0.0, 0.0, 1.0)):
    """Return T_world_camera (optical frame) of a camera at ``eye`` looking at ``target``.

    The image x axis stays horizontal (no roll), so world ``up`` appears upward in the image.
    """
    eye = np.asarray(eye, dtype=float)
    z = np.asarray(target, dtype=float) - eye
    if np.linalg.norm(z) < 1e-9:
        raise ValueError('look_at: eye and target coincide')
    z /= np.linalg.norm(z)
    down = -np.asarray(up, dtype=float)
    y = down - np.dot(down, z) * z
    if np.linalg.norm(y) < 1e-6:
        raise ValueError('look_at: viewing direction parallel to up; roll is undefined')
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return make_transform(np.stack([x, y, z], axis=1), eye)


def convex_polygons_overlap(a, b, gap=0.0):
    """True when convex polygons ``a`` and ``b`` ((N, 2), in order) come within ``gap``.

    Separating-axis test over the edge normals of both polygons.
    """
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
        lengths = np.linalg.norm(normals, axis=1)
        normals = normals[lengths > 1e-12] / lengths[lengths > 1e-12, None]
        pa, pb = a @ normals.T, b @ normals.T
        if np.any((pa.min(axis=0) > pb.max(axis=0) + gap)
                  | (pb.min(axis=0) > pa.max(axis=0) + gap)):
            return False
    return True


def _quat_wxyz(R):
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.asarray(R, dtype=float).reshape(9))
    return q


class World:
    """The simulated tabletop (see the module docstring for the API)."""

    def __init__(self, obj_ids=None, n_objects=(3, 8), seed=0, camera=True,
                 width=WIDTH, height=HEIGHT, fovy_deg=FOVY_DEG, settle=True,
                 placements=None, base_pos=BASE_POS, base_yaw=0.0,
                 table_centre=(0.0, 0.0), table_half_size=TABLE_HALF_SIZE[:2]):
        """Build the scene, drop the objects until they rest and place the camera.

        ``obj_ids`` chooses the objects (YCB-V ids 1..21, distinct); otherwise
        ``n_objects`` (an int or an inclusive (lo, hi) range) distinct ids are drawn with
        ``seed``. ``placements`` (a list of :class:`Placement`) instead puts given objects
        (any mesh, e.g. a BOP dataset's model) at given poses; they are then settled in
        place. ``camera=False`` skips the OpenGL renderer (physics only). ``base_pos`` /
        ``base_yaw`` place the Panda's base; ``table_centre`` / ``table_half_size`` (x, y
        metres) the table top (always at z = 0).
        """
        self.rng = np.random.default_rng(seed)
        self.width, self.height, self.fovy_deg = int(width), int(height), float(fovy_deg)
        self.K = intrinsics_from_fovy(self.fovy_deg, self.width, self.height)
        self.base_pos, self.base_yaw = tuple(float(v) for v in base_pos), float(base_yaw)
        self.table_centre = tuple(float(v) for v in table_centre)
        self.table_half_size = tuple(float(v) for v in table_half_size)
        if placements is None:
            self.objects = [
                SimObject(i, oid, YCBV_OBJECTS[oid], f'obj_{i:02d}_{oid:02d}', object_mesh(oid),
                          YCBV_MASSES_KG[oid], YCBV_COLOURS[oid], ycbv_parts(oid))
                for i, oid in enumerate(self._choose_ids(obj_ids, n_objects))
            ]
        else:
            self.objects = [self._placed_object(i, p) for i, p in enumerate(placements)]
            if not self.objects:
                raise WorldError('placements is empty: a world needs at least one object')
        self.model = self._build_model().compile()
        self.data = mujoco.MjData(self.model)
        self._index_model()
        self._gripper_target = MAX_OPENING
        self.reset_robot()
        if placements is None:
            self._place_objects()
        else:
            for i, p in enumerate(placements):
                self.set_object_pose(i, p.T_world_obj)
        if settle:
            self.settle()
        self._renderer = None
        if camera:
            try:
                self._renderer = mujoco.Renderer(self.model, self.height, self.width)
            except Exception as exc:  # mujoco raises FatalError/ImportError/RuntimeError
                raise backend.RenderBackendError(backend.render_failure_message(exc)) from exc
            self.randomize_camera()

    def _choose_ids(self, obj_ids, n_objects):
        if obj_ids is None:
            lo, hi = (n_objects, n_objects) if np.isscalar(n_objects) else n_objects
            if not 1 <= lo <= hi <= len(YCBV_OBJECTS):
                raise WorldError(f'n_objects must be within 1..{len(YCBV_OBJECTS)}, '
                                 f'got {n_objects!r}')
            n = int(self.rng.integers(lo, hi + 1))
            obj_ids = sorted(self.rng.choice(sorted(YCBV_OBJECTS), size=n, replace=False))
        obj_ids = [int(i) for i in obj_ids]
        bad = [i for i in obj_ids if i not in YCBV_OBJECTS]
        if bad or len(set(obj_ids)) != len(obj_ids) or not obj_ids:
            raise WorldError(f'obj_ids must be distinct YCB-V ids 1..21, got {obj_ids}')
        return obj_ids

    @staticmethod
    def _placed_object(index, p):
        oid = int(p.obj_id)
        mesh = p.mesh if p.mesh is not None else object_mesh(oid)
        if len(mesh.faces) == 0:
            raise WorldError(f'placement {index}: mesh of obj_id {oid} has no faces')
        mass = p.mass
        if mass is None:
            # Unknown objects: a plausible density over the hull volume, clipped.
            mass = float(np.clip(500.0 * mesh.convex_hull.volume, 0.02, 1.2))
        colour = YCBV_COLOURS.get(oid, (0.6, 0.6, 0.6))
        name = YCBV_OBJECTS.get(oid, f'obj_{oid:06d}')
        parts = p.parts
        if parts is None and p.mesh is None:
            parts = ycbv_parts(oid)
        return SimObject(index, oid, name, f'obj_{index:02d}_{oid:02d}', mesh, float(mass),
                         colour, parts)

    # ---------------------------------------------------------------- model building
    def _build_model(self):
        spec = robot.panda_spec(base_pos=self.base_pos, base_yaw=self.base_yaw)
        spec.modelname = 'bopask_tabletop'
        spec.option.timestep = 0.002
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        # Elliptic cones with a high impratio: grasped objects do not creep out of the grip.
        spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        spec.option.impratio = 10.0
        spec.visual.global_.offwidth = self.width
        spec.visual.global_.offheight = self.height
        spec.stat.extent = 2.0
        spec.visual.map.znear = 0.01   # x extent: 2 cm near plane
        spec.visual.map.zfar = 5.0     # 10 m far plane
        spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
        spec.visual.headlight.diffuse = [0.4, 0.4, 0.4]
        world = spec.worldbody
        world.add_light(pos=[0.3, -0.4, 2.0], dir=[-0.1, 0.2, -1.0], castshadow=False,
                        diffuse=[0.5, 0.5, 0.5])
        world.add_light(pos=[-0.5, 0.6, 2.0], dir=[0.2, -0.3, -1.0], castshadow=False,
                        diffuse=[0.3, 0.3, 0.3])
        world.add_geom(name='floor', type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1],
                       pos=[0, 0, -TABLE_HEIGHT], rgba=[0.45, 0.45, 0.48, 1])
        (hx, hy), hz = self.table_half_size, TABLE_HALF_SIZE[2]
        cx, cy = self.table_centre
        world.add_geom(name='table', type=mujoco.mjtGeom.mjGEOM_BOX, size=[hx, hy, hz],
                       pos=[cx, cy, -hz], rgba=[0.72, 0.6, 0.45, 1],
                       friction=[1.0, 0.005, 0.0001])
        for sx in (-1, 1):
            for sy in (-1, 1):
                world.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX,
                               size=[0.03, 0.03, (TABLE_HEIGHT - 2 * hz) / 2],
                               pos=[cx + sx * (hx - 0.05), cy + sy * (hy - 0.05),
                                    -TABLE_HEIGHT / 2 - hz],
                               rgba=[0.4, 0.3, 0.2, 1], contype=0, conaffinity=0)
        for obj in self.objects:
            self._add_object(spec, obj)
        world.add_camera(name=CAMERA_NAME, fovy=self.fovy_deg, pos=[1.0, 0.0, 1.0])
        return spec

    @staticmethod
    def _add_object(spec, obj):
        """A free body: the real mesh for rendering, convex parts (or its hull) for contact."""
        def add_mesh(name, verts, faces):
            mesh = spec.add_mesh(name=name)
            mesh.uservert = np.asarray(verts, dtype=np.float32).reshape(-1)
            mesh.userface = np.asarray(faces, dtype=np.int32).reshape(-1)
            # Non-watertight scans have no well-defined volume: use the hull's inertia.
            mesh.inertia = mujoco.mjtMeshInertia.mjMESH_INERTIA_CONVEX
            return name

        body = spec.worldbody.add_body(name=obj.body)
        body.add_freejoint(name=f'{obj.body}_joint')
        # Mass properties of the solid hull scaled to the object's mass, so they do not
        # depend on which geoms collide.
        hull = obj.mesh.convex_hull
        inertia = hull.moment_inertia * (obj.mass / hull.volume)
        body.explicitinertial = True
        body.mass = obj.mass
        body.ipos = hull.center_mass
        body.fullinertia = [inertia[0, 0], inertia[1, 1], inertia[2, 2], inertia[0, 1],
                            inertia[0, 2], inertia[1, 2]]
        contact = dict(friction=[1.0, 0.01, 0.0001], condim=4)
        visual = dict(rgba=list(obj.colour) + [1.0])
        if obj.parts:
            visual.update(contype=0, conaffinity=0)
        else:
            visual.update(contact)
        mesh_name = add_mesh(f'{obj.body}_mesh', obj.mesh.vertices, obj.mesh.faces)
        body.add_geom(name=f'{obj.body}_geom', type=mujoco.mjtGeom.mjGEOM_MESH,
                      meshname=mesh_name, group=0, **visual)
        for k, (verts, faces) in enumerate(obj.parts or ()):
            part = add_mesh(f'{obj.body}_part{k}', verts, faces)
            body.add_geom(name=f'{obj.body}_col{k}', type=mujoco.mjtGeom.mjGEOM_MESH,
                          meshname=part, group=COLLISION_GROUP, rgba=[0.5, 0.5, 0.5, 0.3],
                          **contact)

    def _index_model(self):
        m = self.model
        ids = robot.name_id
        self._arm_act = np.array([ids(m, mujoco.mjtObj.mjOBJ_ACTUATOR, n)
                                  for n in robot.ARM_ACTUATORS])
        self._grip_act = ids(m, mujoco.mjtObj.mjOBJ_ACTUATOR, robot.GRIPPER_ACTUATOR)
        self._arm_qadr = robot.arm_qpos_addresses(m)
        self._arm_dadr = np.array([m.jnt_dofadr[ids(m, mujoco.mjtObj.mjOBJ_JOINT, n)]
                                   for n in robot.ARM_JOINTS])
        self._finger_qadr = np.array([m.jnt_qposadr[ids(m, mujoco.mjtObj.mjOBJ_JOINT, n)]
                                      for n in robot.FINGER_JOINTS])
        self._tcp_site = ids(m, mujoco.mjtObj.mjOBJ_SITE, robot.TCP_SITE)
        self._base_body = ids(m, mujoco.mjtObj.mjOBJ_BODY, robot.BASE_BODY)
        self._cam = ids(m, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
        self._obj_body = np.array([ids(m, mujoco.mjtObj.mjOBJ_BODY, o.body)
                                   for o in self.objects])
        self._obj_geom = np.array([ids(m, mujoco.mjtObj.mjOBJ_GEOM, f'{o.body}_geom')
                                   for o in self.objects])
        self._obj_qadr = np.array([m.jnt_qposadr[ids(m, mujoco.mjtObj.mjOBJ_JOINT,
                                                     f'{o.body}_joint')]
                                   for o in self.objects])
        self._obj_dadr = np.array([m.jnt_dofadr[ids(m, mujoco.mjtObj.mjOBJ_JOINT,
                                                    f'{o.body}_joint')]
                                   for o in self.objects])
        # Geom id -> object index, for segmentation images.
        self._geom_to_obj = np.full(m.ngeom, -1, dtype=np.int32)
        self._geom_to_obj[self._obj_geom] = np.arange(len(self.objects))

    # ---------------------------------------------------------------- objects
    def _place_objects(self, max_tries=300, gap=0.004):
        """Put every object at a random free spot in OBJECT_REGION, upright, random yaw.

        Footprints are the 2D convex hulls of the rotated meshes, so long objects pack
        beside each other; ``gap`` metres are kept between footprints.
        """
        placed = []  # footprint polygons (K, 2) in the world
        (x0, x1), (y0, y1) = OBJECT_REGION
        # Largest footprints first: they are the hardest to fit.
        order = sorted(range(len(self.objects)),
                       key=lambda i: -np.linalg.norm(self.objects[i].mesh.extents[:2]))
        for i in order:
            obj, qadr = self.objects[i], self._obj_qadr[i]
            hull2d = obj.mesh.vertices[ConvexHull(obj.mesh.vertices[:, :2]).vertices]
            for _ in range(max_tries):
                yaw = self.rng.uniform(-np.pi, np.pi)
                R = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0],
                              [0, 0, 1.0]])
                xy = self.rng.uniform([x0, y0], [x1, y1])
                foot = (hull2d @ R.T)[:, :2] + xy
                if not any(convex_polygons_overlap(foot, other, gap) for other in placed):
                    break
            else:
                raise WorldError(
                    f'could not place {obj.name} without overlap after {max_tries} tries '
                    f'({len(self.objects)} objects in the region {OBJECT_REGION})')
            placed.append(foot)
            z = -(obj.mesh.vertices @ R.T)[:, 2].min() + 0.003  # lowest point 3 mm up
            self.data.qpos[qadr:qadr + 3] = [xy[0], xy[1], z]
            self.data.qpos[qadr + 3:qadr + 7] = _quat_wxyz(R)
        mujoco.mj_forward(self.model, self.data)

    def set_object_pose(self, index, T_world_obj):
        """Teleport object ``index`` to ``T_world_obj`` (velocity zeroed)."""
        T = np.asarray(T_world_obj, dtype=float)
        qadr, dadr = self._obj_qadr[index], self._obj_dadr[index]
        self.data.qpos[qadr:qadr + 3] = T[:3, 3]
        self.data.qpos[qadr + 3:qadr + 7] = _quat_wxyz(T[:3, :3])
        self.data.qvel[dadr:dadr + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def object_speeds(self):
        """(N,) largest linear or angular speed component of each object."""
        return np.array([np.abs(self.data.qvel[d:d + 6]).max() for d in self._obj_dadr])

    def settle(self, max_time=SETTLE_TIME):
        """Simulate until every object rests (or ``max_time`` s); raise if one left the table.

        Returns the simulated time spent.
        """
        steps = int(max_time / self.model.opt.timestep)
        t0 = self.data.time
        for i in range(steps):
            self.step()
            if i > 50 and i % 10 == 0 and self.object_speeds().max() < REST_SPEED:
                break
        for obj in self.objects:
            if self.object_pose(obj.index)[2, 3] < -0.05:
                raise WorldError(f'{obj.name} fell off the table while settling')
        return self.data.time - t0

    def object_pose(self, index):
        """T_world_obj of object ``index`` (model frame, metres)."""
        b = self._obj_body[index]
        return make_transform(self.data.xmat[b].reshape(3, 3), self.data.xpos[b])

    def object_poses(self):
        """[(obj_id, T_world_obj), ...] in object index order."""
        return [(o.obj_id, self.object_pose(o.index)) for o in self.objects]

    @property
    def T_world_base(self):
        """Pose of the Panda base (panda_link0) in the world."""
        b = self._base_body
        return make_transform(self.data.xmat[b].reshape(3, 3), self.data.xpos[b])

    # ---------------------------------------------------------------- robot
    def reset_robot(self, q=robot.HOME_Q, opening=MAX_OPENING):
        """Teleport the arm to ``q`` (and the fingers to ``opening``), targets included."""
        q = np.asarray(q, dtype=float)
        self.data.qpos[self._arm_qadr] = q
        self.data.qvel[self._arm_dadr] = 0.0
        self.data.qpos[self._finger_qadr] = opening / 2.0
        self.data.ctrl[self._arm_act] = q
        self._gripper_target = float(opening)
        self.data.ctrl[self._grip_act] = float(opening)
        mujoco.mj_forward(self.model, self.data)

    def set_arm_targets(self, q):
        """Set the 7 arm joint position targets (radians), clipped to the joint limits."""
        q = np.asarray(q, dtype=float).reshape(-1)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ValueError(f'arm targets must be 7 finite joint angles, got {q!r}')
        lo, hi = self.model.actuator_ctrlrange[self._arm_act].T
        self.data.ctrl[self._arm_act] = np.clip(q, lo, hi)

    def arm_targets(self):
        """(7,) current arm position targets."""
        return self.data.ctrl[self._arm_act].copy()

    def set_gripper_opening(self, opening):
        """Command the finger opening in metres (0..0.08); fingers move at GRIPPER_SPEED.

        Closing on an object squeezes it with the gripper's force limit.
        """
        opening = float(opening)
        if not np.isfinite(opening):
            raise ValueError(f'gripper opening must be finite, got {opening!r}')
        self._gripper_target = float(np.clip(opening, 0.0, MAX_OPENING))

    def step(self, n=1):
        """Advance the physics by ``n`` steps (``n * dt`` seconds)."""
        dmax = GRIPPER_SPEED * self.model.opt.timestep
        for _ in range(int(n)):
            cur = self.data.ctrl[self._grip_act]
            self.data.ctrl[self._grip_act] = cur + np.clip(self._gripper_target - cur,
                                                           -dmax, dmax)
            mujoco.mj_step(self.model, self.data)

    @property
    def dt(self):
        """Physics time step, seconds."""
        return float(self.model.opt.timestep)

    @property
    def time(self):
        """Simulated time, seconds."""
        return float(self.data.time)

    def arm_joint_positions(self):
        """(7,) measured arm joint angles, radians."""
        return self.data.qpos[self._arm_qadr].copy()

    def arm_joint_velocities(self):
        """(7,) measured arm joint velocities, rad/s."""
        return self.data.qvel[self._arm_dadr].copy()

    def gripper_opening(self):
        """Measured distance between the fingers, metres."""
        return float(self.data.qpos[self._finger_qadr].sum())

    def tcp_pose(self):
        """T_world_tcp: the core.gripper TCP frame (z approach, y finger line)."""
        s = self._tcp_site
        return make_transform(self.data.site_xmat[s].reshape(3, 3), self.data.site_xpos[s])

    def execute_joint_path(self, path, max_speed=0.8, settle_time=0.3, tol=0.01):
        """Move the arm smoothly through the (M, 7) joint ``path``; return the final error.

        Each segment takes the time its largest joint change needs at ``max_speed`` rad/s
        (at least 0.1 s) with a smooth (cosine) time scaling, so the arm starts and stops
        without jerks. The current targets are the start. After the last waypoint the
        physics runs up to ``settle_time`` s until every joint is within ``tol`` rad.
        Returns the max absolute joint error (radians) at the end.
        """
        path = np.asarray(path, dtype=float)
        if path.ndim != 2 or path.shape[1] != 7 or not np.all(np.isfinite(path)):
            raise ValueError(f'joint path must be a finite (M, 7) array, got {path.shape}')
        start = self.arm_targets()
        for goal in path:
            duration = max(np.abs(goal - start).max() / max_speed, 0.1)
            steps = max(int(round(duration / self.dt)), 1)
            for k in range(1, steps + 1):
                s = 0.5 - 0.5 * np.cos(np.pi * k / steps)
                self.set_arm_targets(start + s * (goal - start))
                self.step()
            start = goal
        for _ in range(int(settle_time / self.dt)):
            if np.abs(self.arm_joint_positions() - path[-1]).max() < tol:
                break
            self.step()
        return float(np.abs(self.arm_joint_positions() - path[-1]).max())

    # ---------------------------------------------------------------- camera
    @property
    def T_world_camera(self):
        """Camera pose in the world, OPTICAL frame (x right, y down, z forward)."""
        c = self._cam
        T_mjcam = make_transform(self.data.cam_xmat[c].reshape(3, 3), self.data.cam_xpos[c])
        return T_mjcam @ MJCAM_FROM_OPTICAL

    def set_camera_pose(self, T_world_camera):
        """Place the camera; ``T_world_camera`` is in the optical frame."""
        T = np.asarray(T_world_camera, dtype=float) @ MJCAM_FROM_OPTICAL
        self.model.cam_pos[self._cam] = T[:3, 3]
        self.model.cam_quat[self._cam] = _quat_wxyz(T[:3, :3])
        mujoco.mj_forward(self.model, self.data)

    def look_at(self, eye, target):
        """Place the camera at ``eye`` looking at ``target`` (world points), no roll."""
        self.set_camera_pose(look_at_optical(eye, target))

    def randomize_camera(self, rng=None):
        """Random view of the objects from the side opposite the robot; returns T_world_camera.

        Target: a point near the objects' centroid; azimuth within 60 degrees of +x,
        elevation 35-70 degrees, distance 0.6-0.95 m.
        """
        rng = self.rng if rng is None else rng
        centres = np.array([self.object_pose(o.index)[:3, 3] for o in self.objects])
        target = centres.mean(axis=0) + rng.uniform(-0.04, 0.04, 3) * [1, 1, 0.5]
        target[2] = max(target[2], 0.02)
        az = rng.uniform(-np.pi / 3, np.pi / 3)
        el = rng.uniform(np.deg2rad(35), np.deg2rad(70))
        dist = rng.uniform(0.6, 0.95)
        eye = target + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                                        np.sin(el)])
        self.look_at(eye, target)
        return self.T_world_camera

    def _require_renderer(self):
        if self._renderer is None:
            raise WorldError('this World was built with camera=False: no rendering')
        return self._renderer

    def render_rgb(self):
        """Colour image, uint8 HxWx3 (RGB)."""
        r = self._require_renderer()
        r.update_scene(self.data, camera=self._cam)
        return r.render().copy()

    def render_depth(self):
        """Metric depth along the optical axis, float32 HxW metres; 0 where nothing is hit."""
        r = self._require_renderer()
        r.enable_depth_rendering()
        try:
            r.update_scene(self.data, camera=self._cam)
            depth = r.render().astype(np.float32)
        finally:
            r.disable_depth_rendering()
        far = self.model.vis.map.zfar * self.model.stat.extent
        depth[~np.isfinite(depth) | (depth >= 0.999 * far)] = 0.0
        return depth

    def render_segmentation(self):
        """Object index per pixel (int32 HxW), -1 for the table, robot and background."""
        r = self._require_renderer()
        r.enable_segmentation_rendering()
        try:
            r.update_scene(self.data, camera=self._cam)
            seg = r.render()
        finally:
            r.disable_segmentation_rendering()
        geom_ids, types = seg[:, :, 0], seg[:, :, 1]
        out = np.full(geom_ids.shape, -1, dtype=np.int32)
        is_geom = (types == int(mujoco.mjtObj.mjOBJ_GEOM)) & (geom_ids >= 0)
        out[is_geom] = self._geom_to_obj[geom_ids[is_geom]]
        return out

    def render_object_mask(self, index):
        """Full silhouette of object ``index`` (bool HxW), as if nothing occluded it."""
        r = self._require_renderer()
        geom = self._obj_geom[index]
        groups = self.model.geom_group.copy()
        # Show only this geom: move it to group 5 and render with only group 5 enabled.
        opt = mujoco.MjvOption()
        opt.geomgroup[:] = 0
        opt.geomgroup[5] = 1
        self.model.geom_group[:] = 0
        self.model.geom_group[geom] = 5
        r.enable_segmentation_rendering()
        try:
            r.update_scene(self.data, camera=self._cam, scene_option=opt)
            seg = r.render()
        finally:
            r.disable_segmentation_rendering()
            self.model.geom_group[:] = groups
        return (seg[:, :, 1] == int(mujoco.mjtObj.mjOBJ_GEOM)) & (seg[:, :, 0] == geom)

    # ---------------------------------------------------------------- lifetime
    def close(self):
        """Release the renderer's OpenGL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self):
        """Use as a context manager: ``with World() as w: ...``."""
        return self

    def __exit__(self, *exc):
        """Close the renderer."""
        self.close()
