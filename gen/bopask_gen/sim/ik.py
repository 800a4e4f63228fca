"""Inverse kinematics of the Panda TCP with mink (differential IK on the MuJoCo model, daqp).

The model is the same arm + hand as the simulated world (``robot.panda_spec``), base at the
origin; targets given in the world are moved into the base frame with ``T_world_base``.
The TCP is the ``core.gripper`` frame (z approach, y finger line). A parallel gripper is
symmetric under a half turn about its approach axis, so :func:`solve_grasp` also tries the
flipped pose and keeps the solution nearer the seed.

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
        T = self.configuration.get_transform_frame_to_world(robot.TCP_SITE, 'site').as_matrix()
        return (float(np.linalg.norm(T[:3, 3] - T_base_target[:3, 3])),
                rotation_angle_between(T, T_base_target))

    def _solve_from(self, T_base_target, q_start, max_iters, dt=0.5):
        qpos = self.configuration.q.copy()
        qpos[self._qadr] = np.clip(q_start, self.lower + 1e-4, self.upper - 1e-4)
        self.configuration.update(qpos)
        self.frame_task.set_target(self._mink.SE3.from_matrix(T_base_target))
        self.posture_task.set_target(qpos)
        for _ in range(max_iters):
            pos_err, rot_err = self._errors(T_base_target)
            if pos_err < POSITION_TOLERANCE and rot_err < ROTATION_TOLERANCE:
                break
            vel = self._mink.solve_ik(self.configuration, [self.frame_task, self.posture_task],
                                      dt, solver='daqp', damping=1e-3, limits=self.limits)
            self.configuration.integrate_inplace(vel, dt)
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
        reach = np.linalg.norm(T_target[:3, 3] - [0.0, 0.0, 0.333])
        if reach > 1.2:
            return IKResult(False, None, np.inf, np.inf,
                            f'target {reach:.2f} m from the shoulder: out of reach')
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
