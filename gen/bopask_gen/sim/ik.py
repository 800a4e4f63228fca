"""Inverse kinematics of the Panda TCP with mink (differential IK on the MuJoCo model, daqp).

The model is the same arm + hand as the simulated world (``robot.panda_spec``), base at the
origin; targets given in the world are moved into the base frame with ``T_world_base``.
The TCP is the ``core.gripper`` frame (z approach, y finger line). A parallel gripper is
symmetric under a half turn about its approach axis, so :func:`solve_grasp` also tries the
flipped pose and keeps the solution nearer the seed.

Failing cheaply (the executor plans every pose of a pick and place, fallbacks included,
before it moves): a pose whose wrist would lie beyond the arm's reach is refused without
iterating (:meth:`PandaIK.reachable`, a necessary condition from the kinematic model), and a
solve whose error has stopped shrinking ends there instead of running all its iterations.

    ik = PandaIK(T_world_base)
    res = ik.solve(T_world_tcp, q_seed)      # IKResult(success, q, position_error, ...)
    if not res.success: print(res.message)
    q = solve_tcp_ik(T_world_tcp, T_world_base, q_seed)   # (7,) or None, one shared solver
"""

from dataclasses import dataclass
import functools

import numpy as np

from bopask_gen.core.gripper import flip_about_approach
from bopask_gen.core.transforms import invert_transform, rotation_angle_between
from bopask_gen.sim import robot
from bopask_gen.sim.robot import mujoco

POSITION_TOLERANCE = 1e-3
'''Metres.'''
ROTATION_TOLERANCE = np.deg2rad(0.5)
'''Radians.'''
STALL_WINDOW = 20
'''Iterations over which a solve's progress is judged (see ``PandaIK._solve_from``).'''
STALL_PROGRESS = 1e-3
'''Least relative decrease of the best error over ``STALL_WINDOW`` iterations to go on.'''
SELF_COLLISION_DEPTH = 0.005
'''Metres two of the robot's links may overlap before it counts as the arm hitting itself
(``PandaIK.self_collision``; resting contacts of the collision meshes are shallower).'''
REACH_MARGIN = 0.005
'''Metres a target's wrist may lie beyond the arm's longest reach before it is refused
without iterating (covers the solver's position and rotation tolerances).'''


@dataclass
class IKResult:
    """Outcome of an IK query. ``q`` is None when no solution was found."""

    success: bool
    q: np.ndarray
    position_error: float
    rotation_error: float
    message: str


class PandaIK:
    """TCP-pose IK for a Panda whose base is at ``T_world_base``."""

    def __init__(self, T_world_base=None):
        """Build the kinematic model (about 0.2 s)."""
        import mink
        self._mink = mink
        self.set_base(np.eye(4) if T_world_base is None else T_world_base)
        self.model = robot.panda_spec().compile()
        self.configuration = mink.Configuration(self.model)
        self._qadr = robot.arm_qpos_addresses(self.model)
        self._site = robot.name_id(self.model, mujoco.mjtObj.mjOBJ_SITE, robot.TCP_SITE)
        self.lower = self.model.jnt_range[[self.model.joint(n).id for n in robot.ARM_JOINTS], 0]
        self.upper = self.model.jnt_range[[self.model.joint(n).id for n in robot.ARM_JOINTS], 1]
        self.frame_task = mink.FrameTask(robot.TCP_SITE, 'site', position_cost=1.0,
                                         orientation_cost=1.0, lm_damping=1e-6)
        self.posture_task = mink.PostureTask(self.model, cost=1e-3)
        self.limits = [mink.ConfigurationLimit(self.model)]
        self.reach = arm_reach(self.model)
        self.last_iterations = 0   # iterations of the last ``solve`` (all starts)
        self._collision_data = None
        self._finger_bodies = {int(self.model.jnt_bodyid[self.model.joint(n).id])
                               for n in robot.FINGER_JOINTS}

    def wrist_distance(self, T_base_tcp):
        """Least distance from the shoulder to where the wrist (joint 6) can be for a pose.

        The wrist lies on a circle around the flange axis: ``reach.flange`` behind the TCP
        along its approach, ``reach.offset`` off the axis (joint 7 turns it round).
        """
        r = self.reach
        return float(wrist_distances(T_base_tcp[:3, 3], T_base_tcp[:3, 2], r.shoulder,
                                     r.flange, r.offset))

    def reachable(self, T_world_tcp):
        """False when ``T_world_tcp`` is surely out of reach (microseconds, no iterations).

        A necessary condition only: the wrist within the arm's longest reach (plus
        ``REACH_MARGIN``); a pose that passes can still have no solution (joint limits).
        """
        T = self.T_base_world @ np.asarray(T_world_tcp, dtype=float)
        return self.wrist_distance(T) <= self.reach.wrist + REACH_MARGIN

    def self_collision(self, q):
        """Names of two of the robot's bodies that collide at arm angles ``q`` (7,), or None.

        Contacts of the model's collision geometry deeper than ``SELF_COLLISION_DEPTH``;
        MuJoCo leaves out parent-child pairs, and the two fingers (touching when closed) are
        left out here.
        """
        m = self.model
        if self._collision_data is None:
            self._collision_data = mujoco.MjData(m)
            # Fingers open: closed ones touch, and every check would compute those contacts.
            for name in robot.FINGER_JOINTS:
                j = m.joint(name).id
                self._collision_data.qpos[m.jnt_qposadr[j]] = m.jnt_range[j, 1]
        d = self._collision_data
        d.qpos[self._qadr] = q
        mujoco.mj_kinematics(m, d)
        mujoco.mj_collision(m, d)
        deep = np.nonzero(d.contact.dist[:d.ncon] < -SELF_COLLISION_DEPTH)[0]
        for i in deep:
            bodies = {int(m.geom_bodyid[d.contact.geom1[i]]),
                      int(m.geom_bodyid[d.contact.geom2[i]])}
            if not bodies <= self._finger_bodies:
                return tuple(mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, b)
                             for b in sorted(bodies))
        return None

    def set_base(self, T_world_base):
        """Move the robot base (targets are given in the world)."""
        self.T_world_base = np.asarray(T_world_base, dtype=float)
        self.T_base_world = invert_transform(self.T_world_base)

    def forward(self, q):
        """T_world_tcp of the arm at joint angles ``q`` (7,)."""
        qpos = self.configuration.q.copy()
        qpos[self._qadr] = q
        self.configuration.update(qpos)
        T = self.configuration.get_transform_frame_to_world(robot.TCP_SITE, 'site').as_matrix()
        return self.T_world_base @ T

    def _errors(self, T_base_target):
        # Read straight from the model's data (kept up to date by the configuration): this
        # runs every iteration, and building SE3 / scipy rotations for it took half the
        # solve time.
        data = self.configuration.data
        return (float(np.linalg.norm(data.site_xpos[self._site] - T_base_target[:3, 3])),
                rotation_angle_between(data.site_xmat[self._site].reshape(3, 3),
                                       T_base_target))

    def _solve_from(self, T_base_target, q_start, max_iters, dt=0.5):
        """Iterate from ``q_start``; return (q, position error, rotation error).

        Stops at the tolerances, after ``max_iters``, or once the error has stalled: the
        best error so far (in tolerances, ``max(position / POSITION_TOLERANCE, rotation /
        ROTATION_TOLERANCE)``) shrank by less than ``STALL_PROGRESS`` (relative) over the
        last ``STALL_WINDOW`` iterations. An unreachable pose (joint limits, reach) settles
        within a few iterations at its residual, and 150 more change nothing; a solve
        crawling off a joint limit (a solution 90 iterations on) still shrinks its error by
        about 1 % per window and goes on. On 1300 random poses, the same solutions as 150
        iterations without the stop, with a seventh of the iterations.
        """
        qpos = self.configuration.q.copy()
        qpos[self._qadr] = np.clip(q_start, self.lower + 1e-4, self.upper - 1e-4)
        self.configuration.update(qpos)
        self.frame_task.set_target(self._mink.SE3.from_matrix(T_base_target))
        self.posture_task.set_target(qpos)
        best = []   # best error (in tolerances) after each iteration
        for _ in range(max_iters):
            pos_err, rot_err = self._errors(T_base_target)
            excess = max(pos_err / POSITION_TOLERANCE, rot_err / ROTATION_TOLERANCE)
            if excess < 1.0:
                break
            best.append(min(excess, best[-1]) if best else excess)
            if len(best) > STALL_WINDOW and \
                    best[-1] > best[-1 - STALL_WINDOW] * (1.0 - STALL_PROGRESS):
                break
            vel = self._mink.solve_ik(self.configuration, [self.frame_task, self.posture_task],
                                      dt, solver='daqp', damping=1e-3, limits=self.limits)
            self.configuration.integrate_inplace(vel, dt)
            self.last_iterations += 1
        pos_err, rot_err = self._errors(T_base_target)
        return self.configuration.q[self._qadr].copy(), pos_err, rot_err

    def solve(self, T_world_tcp, q_seed=None, max_iters=150, restarts=6, rng=None):
        """Joint angles putting the TCP at ``T_world_tcp``; IKResult with a clear failure.

        Starts from ``q_seed`` (default: the home pose), then from random configurations.
        """
        T_world_tcp = np.asarray(T_world_tcp, dtype=float)
        if T_world_tcp.shape != (4, 4) or not np.all(np.isfinite(T_world_tcp)):
            return IKResult(False, None, np.inf, np.inf, 'target is not a finite 4x4 pose')
        T_target = self.T_base_world @ T_world_tcp
        self.last_iterations = 0
        # A necessary condition, checked in microseconds: the wrist within the arm's reach.
        wrist = self.wrist_distance(T_target)
        if wrist > self.reach.wrist + REACH_MARGIN:
            return IKResult(False, None, np.inf, np.inf,
                            f'out of reach: the wrist would be {wrist:.3f} m from the '
                            f'shoulder, the arm reaches {self.reach.wrist:.3f} m')
        rng = np.random.default_rng(0) if rng is None else rng
        seed = robot.HOME_Q if q_seed is None else np.asarray(q_seed, dtype=float)
        best = None
        for attempt in range(restarts + 1):
            start = seed if attempt == 0 else rng.uniform(self.lower, self.upper)
            q, pos_err, rot_err = self._solve_from(T_target, start, max_iters)
            if best is None or pos_err + 0.1 * rot_err < best[1] + 0.1 * best[2]:
                best = (q, pos_err, rot_err)
            if pos_err < POSITION_TOLERANCE and rot_err < ROTATION_TOLERANCE:
                return IKResult(True, q, pos_err, rot_err, 'ok')
        q, pos_err, rot_err = best
        return IKResult(False, None, pos_err, rot_err,
                        f'no IK solution within {POSITION_TOLERANCE * 1e3:.1f} mm / '
                        f'{np.rad2deg(ROTATION_TOLERANCE):.1f} deg after {restarts + 1} starts '
                        f'(best {pos_err * 1e3:.1f} mm, {np.rad2deg(rot_err):.1f} deg)')

    def solve_grasp(self, T_world_tcp, q_seed=None, **kwargs):
        """Like :meth:`solve`, also trying the pose flipped about the approach axis.

        Returns (IKResult, flipped) with the solution whose joints are nearer the seed.
        """
        seed = robot.HOME_Q if q_seed is None else np.asarray(q_seed, dtype=float)
        results = []
        for flipped, T in ((False, T_world_tcp), (True, flip_about_approach(T_world_tcp))):
            res = self.solve(T, seed, **kwargs)
            if res.success:
                results.append((np.abs(res.q - seed).sum(), flipped, res))
        if not results:
            return self.solve(T_world_tcp, seed, **kwargs), False
        _, flipped, res = min(results, key=lambda r: r[0])
        return res, flipped


@dataclass(frozen=True)
class ArmReach:
    """Geometry of the arm's reach (metres), from the kinematic model."""

    shoulder: np.ndarray   # joint 2's anchor (base frame): the shoulder
    wrist: float           # longest shoulder -> joint 6 distance (over joint 4's range)
    flange: float          # TCP -> joint 7's axis point nearest joint 6, along the approach
    offset: float          # joint 6 anchor's distance from joint 7's axis


def arm_reach(model):
    """ArmReach of a Panda model (joint anchors at sampled configurations)."""
    data = mujoco.MjData(model)
    qadr = robot.arm_qpos_addresses(model)
    jids = [model.joint(n).id for n in robot.ARM_JOINTS]
    site = robot.name_id(model, mujoco.mjtObj.mjOBJ_SITE, robot.TCP_SITE)
    lo, hi = model.jnt_range[jids[3]]
    wrist, flange, offset, shoulder = 0.0, 0.0, 0.0, None
    for q4 in np.linspace(lo, hi, 400):
        q = np.array(robot.HOME_Q, dtype=float)
        q[3] = q4
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        a2, a6, a7 = data.xanchor[jids[1]], data.xanchor[jids[5]], data.xanchor[jids[6]]
        z = data.site_xmat[site].reshape(3, 3)[:, 2]
        tcp = data.site_xpos[site]
        # Joint 7's axis runs through the TCP along the approach; the wrist sits off it.
        foot = tcp + ((a6 - tcp) @ z) * z
        wrist = max(wrist, float(np.linalg.norm(a6 - a2)))
        flange = float(np.linalg.norm(tcp - foot))
        offset = float(np.linalg.norm(a6 - foot))
        shoulder = a2.copy()
        if np.linalg.norm(np.cross(a7 - tcp, z)) > 1e-6:
            raise ValueError(f"the TCP site {robot.TCP_SITE!r} is off joint 7's axis: the "
                             f'reach check assumes a hand centred on the flange')
    return ArmReach(shoulder, wrist, flange, offset)


def wrist_distances(positions, approach, shoulder, flange, offset):
    """Least shoulder -> wrist (joint 6) distances (...,) for TCP ``positions`` (..., 3).

    All with the same ``approach`` (3,) (see ``ArmReach`` for the other arguments): the
    wrist lies on a circle of radius ``offset`` around the flange axis, ``flange`` behind
    the TCP along its approach (joint 7 turns it round). Pure geometry, vectorised: also
    used where no kinematic model is loaded (the backprojection's place search).
    """
    z = np.asarray(approach, dtype=float)
    v = np.asarray(positions, dtype=float) - flange * z - np.asarray(shoulder, dtype=float)
    along = v @ z
    across = np.linalg.norm(v - along[..., None] * z, axis=-1)
    return np.hypot(along, np.maximum(across - offset, 0.0))


@functools.lru_cache(maxsize=1)
def _shared_solver():
    return PandaIK()


def solve_tcp_ik(T_world_tcp, T_world_base=None, q_seed=None):
    """Joint angles (7,) putting the TCP at ``T_world_tcp``, or None when unreachable.

    Uses one module-wide solver; for the failure reason use :meth:`PandaIK.solve`.
    """
    ik = _shared_solver()
    ik.set_base(np.eye(4) if T_world_base is None else T_world_base)
    res = ik.solve(T_world_tcp, q_seed)
    return res.q if res.success else None
