"""Scripted pick in the simulated world: pre-grasp, straight approach, close, lift.

Motion: home -> hover above the pre-grasp (joint space) -> straight down to the pre-grasp
10 cm behind the grasp along its approach -> straight approach -> close -> lift 15 cm
straight up (world z). Straight segments are dense IK waypoints (``sim.ik``).

Used by ``bopask-gen grasp-check``, the tests and ``bench/bench_sim.py`` to check whether a
grasp label actually lifts its object in physics.
"""

from dataclasses import dataclass, field

import numpy as np

from bopask_gen.core.gripper import MAX_OPENING
from bopask_gen.sim import robot

PREGRASP_DISTANCE = 0.10
'''Metres behind the grasp along the approach axis where the approach starts.'''
LIFT_HEIGHT = 0.15
'''Metres the TCP rises (world z) after closing.'''
LIFT_SUCCESS = 0.10
'''The object counts as lifted when its centre rose at least this much (metres).'''
HOVER_HEIGHT = 0.35
'''Pre-grasps lower than this (world z, metres) are reached by descending from it.'''
OPEN_MARGIN = 0.02
'''Fingers open this much wider than the grasp width before the approach (metres).'''


@dataclass
class PickResult:
    """Outcome of one scripted pick."""

    lifted: bool
    reason: str
    rise: float = 0.0           # how far the object's centre rose, metres
    grip_width: float = 0.0     # finger opening after closing, metres
    details: dict = field(default_factory=dict)


def _offset_along_approach(T, distance):
    out = np.array(T, dtype=float)
    out[:3, 3] += distance * out[:3, 2]
    return out


def _cartesian_joint_path(ik, poses, q_seed, max_jump=0.6):
    """IK for a sequence of nearby poses, each seeded with the previous solution.

    A waypoint that does not converge from the previous solution is retried with more
    iterations, then from random starts; a solution more than ``max_jump`` rad away from
    the previous one would swing the arm through another branch and is refused.
    """
    path = []
    q = q_seed
    for T in poses:
        for kwargs in (dict(restarts=0), dict(restarts=0, max_iters=600),
                       dict(restarts=8, max_iters=300)):
            res = ik.solve(T, q, **kwargs)
            if res.success and np.abs(res.q - q).max() <= max_jump:
                break
        else:
            return None, res.message if not res.success else 'IK branch jump on the path'
        q = res.q
        path.append(q)
    return np.array(path), 'ok'


def plan_pick(ik, T_world_tcp, q_start=robot.HOME_Q, pregrasp=PREGRASP_DISTANCE,
              lift=LIFT_HEIGHT, n_waypoints=6):
    """Joint-space plan of a pick: (q_pregrasp, approach path, lift path) or a failure text.

    The grasp may be flipped about its approach axis (same grasp for a parallel gripper) to
    stay nearer ``q_start``. Returns (dict | None, message).
    """
    T_pre = _offset_along_approach(T_world_tcp, -pregrasp)
    res, flipped = ik.solve_grasp(T_pre, q_start)
    if not res.success:
        return None, f'IK failed for the pre-grasp pose: {res.message}'
    T_grasp = T_world_tcp
    if flipped:
        from bopask_gen.core.gripper import flip_about_approach
        T_grasp = flip_about_approach(T_world_tcp)
        T_pre = _offset_along_approach(T_grasp, -pregrasp)
    # Reach low pre-grasps from above: a joint-space move straight to a pre-grasp beside an
    # object would sweep the hand through its neighbours.
    T_hover = T_pre.copy()
    T_hover[2, 3] = max(T_pre[2, 3], HOVER_HEIGHT)
    hover = ik.solve(T_hover, res.q)
    if not hover.success:
        return None, f'IK failed for the hover pose above the pre-grasp: {hover.message}'
    n_down = int(np.ceil((T_hover[2, 3] - T_pre[2, 3]) / 0.03))
    descent = []
    for k in range(1, n_down + 1):
        T = T_pre.copy()
        T[2, 3] = T_hover[2, 3] + (T_pre[2, 3] - T_hover[2, 3]) * k / n_down
        descent.append(T)
    descent_path, msg = _cartesian_joint_path(ik, descent, hover.q)
    if descent_path is None:
        return None, f'IK failed on the descent to the pre-grasp: {msg}'
    q_pre = descent_path[-1] if n_down else hover.q
    s = np.linspace(0.0, 1.0, n_waypoints)[1:]
    approach = [_offset_along_approach(T_grasp, -pregrasp * (1.0 - k)) for k in s]
    approach_path, msg = _cartesian_joint_path(ik, approach, q_pre)
    if approach_path is None:
        return None, f'IK failed on the approach: {msg}'
    lifts = []
    for k in s:
        T = T_grasp.copy()
        T[2, 3] += lift * k
        lifts.append(T)
    lift_path, msg = _cartesian_joint_path(ik, lifts, approach_path[-1])
    if lift_path is None:
        return None, f'IK failed on the lift: {msg}'
    return {'q_hover': hover.q, 'descent': descent_path.reshape(-1, 7), 'q_pregrasp': q_pre,
            'approach': approach_path, 'lift': lift_path, 'T_grasp': T_grasp,
            'flipped': flipped}, 'ok'


def _close_gripper(world, max_time=1.2, still_time=0.15):
    world.set_gripper_opening(0.0)
    still, last = 0, world.gripper_opening()
    need = int(still_time / world.dt)
    for _ in range(int(max_time / world.dt)):
        world.step()
        w = world.gripper_opening()
        still = still + 1 if abs(w - last) < 2e-6 else 0
        last = w
        if still >= need:
            break
    return world.gripper_opening()


def execute_pick(world, ik, obj_index, T_world_tcp, width, lift=LIFT_HEIGHT):
    """Run a scripted pick of object ``obj_index`` with the grasp ``T_world_tcp`` / ``width``.

    The arm starts from the home pose (teleported there; objects are not touched). Returns a
    PickResult; ``lifted`` is True when the object rose by at least LIFT_SUCCESS.
    """
    world.reset_robot(robot.HOME_Q, opening=min(MAX_OPENING, width + OPEN_MARGIN))
    z0 = world.object_pose(obj_index)[2, 3]
    plan, msg = plan_pick(ik, T_world_tcp, robot.HOME_Q, lift=lift)
    if plan is None:
        return PickResult(False, msg)
    world.execute_joint_path(plan['q_hover'][None], max_speed=1.0)
    if len(plan['descent']):
        world.execute_joint_path(plan['descent'], max_speed=0.6)
    world.execute_joint_path(plan['approach'], max_speed=0.4)
    grip = _close_gripper(world)
    if grip < 0.002:
        return PickResult(False, 'gripper closed on nothing', grip_width=grip)
    world.execute_joint_path(plan['lift'], max_speed=0.4)
    world.step(int(0.5 / world.dt))  # hold: a slipping object falls now
    rise = world.object_pose(obj_index)[2, 3] - z0
    lifted = rise >= LIFT_SUCCESS
    reason = 'lifted' if lifted else f'object rose only {rise * 100:.1f} cm'
    return PickResult(lifted, reason, rise=float(rise), grip_width=float(grip),
                      details={'flipped': plan['flipped']})
