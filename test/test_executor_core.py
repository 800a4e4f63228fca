"""Executor core: workspace refusals, IK with mink on the Panda, the pick-and-place steps."""

import numpy as np
import pytest

from bopask_gen.core.transforms import make_transform
from bopask_gen.sim import robot
from bopask_ros.executor import (
    check_workspace,
    ExecutorParams,
    IKError,
    place_point,
    plan_pick_place,
    ray_at_height,
    WorkspaceError,
)
from bopask_ros.executor_node import MinkIK


def top_down(x, y, z, yaw=0.0):
    fy = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    fz = np.array([0.0, 0.0, -1.0])
    return make_transform(np.stack([np.cross(fy, fz), fy, fz], axis=1), [x, y, z])


@pytest.fixture(scope='module')
def ik():
    return MinkIK()


def test_workspace_refusal_names_the_target():
    params = ExecutorParams()
    check_workspace([[0.5, 0.0, 0.1]], ['grasp'], params)
    with pytest.raises(WorkspaceError, match=r'place target \(0.950, 0.000, 0.100\) m is '
                                             r'outside the workspace box'):
        check_workspace([[0.5, 0.0, 0.1], [0.95, 0.0, 0.1]], ['grasp', 'place'], params)
    with pytest.raises(WorkspaceError):
        check_workspace([[np.nan, 0.0, 0.1]], ['grasp'], params)


def test_place_point_stands_off_toward_the_start():
    p = place_point([0.4, 0.0, 0.05], [0.6, 0.0, 0.1], 0.12)
    np.testing.assert_allclose(p, [0.48, 0.0, 0.1])
    np.testing.assert_allclose(ray_at_height([1.0, 0, 0.6, -0.6, 0, -0.8], 0.2),
                               [0.7, 0.0, 0.2])
    assert ray_at_height([0, 0, 0.5, 1.0, 0, 0.0], 0.2) is None


def test_plan_pick_place_sequence(ik):
    T = top_down(0.45, -0.1, 0.05, yaw=0.3)
    waypoints = np.array([[0.45, -0.1, 0.08], [0.5, 0.0, 0.1], [0.55, 0.1, 0.1]])
    steps = plan_pick_place(T, waypoints, robot.HOME_Q, ik, ExecutorParams(),
                            target_point=[0.55, 0.12, 0.1], width=0.05)
    assert [s.name for s in steps] == ['pre-grasp', 'open', 'approach', 'close', 'lift',
                                       'waypoints', 'place', 'open', 'retreat']
    assert steps[1].width == pytest.approx(0.08) and steps[3].width == 0.0
    # The arm ends each Cartesian step at its target (forward kinematics agree).
    for step in steps:
        if step.kind == 'arm':
            T_end = ik.forward(step.positions[-1])
            np.testing.assert_allclose(T_end[:3, 3], step.targets[-1][:3, 3], atol=2e-3)
            assert np.all(np.diff(np.concatenate([[0.0], step.times])) > 0)
    approach = [s for s in steps if s.name == 'approach'][0]
    grasp_T = ik.forward(approach.positions[-1])
    np.testing.assert_allclose(grasp_T[:3, 3], T[:3, 3], atol=2e-3)
    assert grasp_T[:3, 2] @ [0, 0, -1] > 0.999


def test_tilted_grasp_keeps_its_approach_and_retreats_along_it(ik):
    # 30 degrees off vertical, about the finger line (y), coming from the robot's side.
    t = np.deg2rad(30.0)
    fy, down = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    fz = np.cos(t) * down + np.sin(t) * np.cross(fy, down) * -1.0
    T = make_transform(np.stack([np.cross(fy, fz), fy, fz], axis=1), [0.5, 0.0, 0.05])
    steps = plan_pick_place(T, np.array([[0.5, 0.0, 0.08], [0.5, 0.2, 0.1]]), robot.HOME_Q,
                            ik, ExecutorParams(), target_point=[0.5, 0.25, 0.1],
                            width=0.05, place=[0.5, 0.15, 0.1])
    arm = {s.name: s for s in steps if s.kind == 'arm'}
    for name in ('pre-grasp', 'approach', 'lift', 'place', 'retreat'):
        T_end = ik.forward(arm[name].positions[-1])
        assert T_end[:3, 2] @ fz > np.cos(np.deg2rad(1.0)), name   # same approach throughout
    np.testing.assert_allclose(ik.forward(arm['pre-grasp'].positions[-1])[:3, 3],
                               T[:3, 3] - 0.12 * fz, atol=2e-3)
    place_end = ik.forward(arm['place'].positions[-1])[:3, 3]
    np.testing.assert_allclose(ik.forward(arm['retreat'].positions[-1])[:3, 3],
                               place_end - 0.12 * fz, atol=2e-3)


def test_ik_failure_is_refused_before_anything(ik):
    # Inside the box but 1 m from the shoulder: beyond the Panda's reach.
    params = ExecutorParams(workspace_max=(1.2, 0.6, 0.8))
    T = top_down(1.0, 0.5, 0.3)
    with pytest.raises(IKError, match='IK failed for pre-grasp'):
        plan_pick_place(T, [[0.5, 0.0, 0.1], [0.5, 0.1, 0.1]], robot.HOME_Q, ik, params)


def test_outside_workspace_is_refused_before_ik(ik):
    T = top_down(0.95, 0.0, 0.05)
    with pytest.raises(WorkspaceError, match='pre-grasp'):
        plan_pick_place(T, [[0.5, 0.0, 0.1], [0.5, 0.1, 0.1]], robot.HOME_Q, ik)


def test_carry_height_falls_back_to_a_reachable_tier(ik):
    T = top_down(0.45, -0.1, 0.1)
    waypoints = np.array([[0.45, -0.1, 0.12], [0.5, 0.0, 0.2], [0.55, 0.1, 0.2]])
    target, place = [0.55, 0.12, 0.2], [0.45, 0.05, 0.2]
    # Reachable: the object's bottom is carried above the scene's highest point.
    steps = plan_pick_place(T, waypoints, robot.HOME_Q, ik, ExecutorParams(),
                            target_point=target, place=place, scene_top_z=0.3)
    lift = [s for s in steps if s.name == 'lift'][0]
    assert lift.targets[-1][2, 3] == pytest.approx(0.3 + 0.1 + 0.05)
    # A scene top that would carry the hand out of the workspace box: a lower carry is
    # planned (over the target's top), not a refusal.
    steps = plan_pick_place(T, waypoints, robot.HOME_Q, ik, ExecutorParams(),
                            target_point=target, place=place, scene_top_z=0.6)
    lift = [s for s in steps if s.name == 'lift'][0]
    assert lift.targets[-1][2, 3] == pytest.approx(0.2 + 0.1 + 0.05)


class ShortReachIK:
    """A toy solver that only converges within 4 cm of its seed (x = first joint)."""

    last_message = 'seed too far'

    def solve(self, T, q_seed, restarts=0):
        x = T[0, 3]
        if abs(x - q_seed[0]) > 0.04:
            return None
        q = np.array(q_seed, dtype=float)
        q[0] = x
        return q


def test_a_pose_too_far_from_its_seed_is_reached_through_midpoints():
    from bopask_ros.executor import solve_path
    start = top_down(0.0, 0.0, 0.2)
    steps = [top_down(0.1, 0.0, 0.2)]
    path = solve_path(ShortReachIK(), steps, np.zeros(7), 'lift', T_from=start,
                      max_halvings=2)
    np.testing.assert_allclose(path[:, 0], [0.025, 0.05, 0.075, 0.1])
    with pytest.raises(IKError):   # one halving level: 5 cm halves are still too far
        solve_path(ShortReachIK(), steps, np.zeros(7), 'lift', T_from=start, max_halvings=1)
    with pytest.raises(IKError, match='IK failed for lift pose 1/1.*seed too far'):
        solve_path(ShortReachIK(), [top_down(0.3, 0.0, 0.2)], np.zeros(7), 'lift',
                   T_from=start)
    with pytest.raises(IKError):   # no halving without the pose the arm starts from
        solve_path(ShortReachIK(), steps, np.zeros(7), 'lift')


def far_reach_request(name='executor_request_far_reach.json'):
    """Failure D of issue 5 (see the fixture's description), and the node's parameters."""
    import json
    from pathlib import Path
    data = json.loads((Path(__file__).parent / 'data' / name).read_text())
    params = dict(data['executor_parameters'])
    params = ExecutorParams(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in params.items()})
    return data['request'], params


def plan_request(req, params, ik, skipped=None, dropped=None):
    from bopask_ros.executor_node import request_plan_arguments
    return plan_pick_place(q_start=robot.HOME_Q, ik=ik, params=params, skipped=skipped,
                           dropped=dropped, **request_plan_arguments(req))


def test_far_reach_scene_is_carried_over_the_scene(ik):
    # A tall object grasped on top: carried over the scene, the waypoints' viewing rays cross
    # the carrying height near the camera, beyond the arm's top-down reach. Those carry
    # poses fall back to the surface points (here off the table: skipped), not a refusal.
    req, params = far_reach_request()
    skipped, dropped = [], []
    steps = plan_request(req, params, ik, skipped, dropped)
    arm = {s.name: s for s in steps if s.kind == 'arm'}
    hold = req['grasp']['T'][2][3] - params.table_z
    assert arm['lift'].targets[-1][2, 3] == pytest.approx(
        req['scene_top_z'] + hold + params.carry_clearance)   # the 'scene' tier
    assert skipped == [1, 2, 3] and dropped == []
    for step in arm.values():
        np.testing.assert_allclose(ik.forward(step.positions[-1])[:3, 3],
                                   step.targets[-1][:3, 3], atol=2e-3)


def test_scene_carry_drops_a_waypoint_without_ik_solution(ik):
    # The same scene with a solver that has no quick reach check: the far carry poses are
    # tried, have no IK solution, and are left out over the scene (nothing in the way).
    from types import SimpleNamespace
    req, params = far_reach_request()
    plain = SimpleNamespace(solve=ik.solve, forward=ik.forward)
    skipped, dropped = [], []
    steps = plan_request(req, params, plain, skipped, dropped)
    lift = [s for s in steps if s.name == 'lift'][0]
    assert lift.targets[-1][2, 3] > req['scene_top_z']
    assert dropped and skipped == []
    carry = [s for s in steps if s.name == 'waypoints'][0]
    assert len(carry.targets) == len(req['waypoints']) - 1 - len(dropped)


def test_unreachable_pose_is_refused_at_once(ik):
    from bopask_gen.sim.ik import PandaIK
    solver = PandaIK()
    # Top-down 0.78 m out at 0.38 m: the wrist would be beyond the arm's reach.
    res = solver.solve(top_down(0.78, 0.1, 0.38), robot.HOME_Q, restarts=3)
    assert not res.success and solver.last_iterations == 0
    assert 'out of reach: the wrist would be 0.74' in res.message
    assert not ik.reachable(top_down(0.78, 0.1, 0.38)) and ik.reachable(top_down(0.5, 0, 0.3))
    # Within that bound but still without a solution (down by the robot's own base): the
    # solve stops once it stalls, not after 150 iterations.
    assert solver.reachable(top_down(0.1, 0.0, 0.05))
    res = solver.solve(top_down(0.1, 0.0, 0.05), robot.HOME_Q, restarts=0)
    assert not res.success and 'no IK solution' in res.message
    assert 0 < solver.last_iterations < 40


def test_reach_check_never_refuses_a_reachable_pose():
    from bopask_gen.sim.ik import PandaIK
    solver = PandaIK()
    rng = np.random.default_rng(3)
    for _ in range(300):
        assert solver.reachable(solver.forward(rng.uniform(solver.lower, solver.upper)))


def test_stall_detection_keeps_the_solutions(monkeypatch):
    # Stopping a stalled solve early finds exactly the solutions the full 150 iterations do.
    from bopask_gen.sim import ik as ik_module
    solver = ik_module.PandaIK()
    poses = [top_down(x, y, z, yaw) for x, y, z, yaw in (
        (0.45, -0.1, 0.05, 0.3), (0.6, 0.3, 0.2, 1.2), (0.3, -0.4, 0.1, -1.0),
        (0.7, 0.0, 0.35, 0.0), (0.72, 0.1, 0.45, 0.5), (0.55, 0.2, 0.5, 2.5),
        (0.66, 0.1, 0.53, -0.6), (0.2, 0.0, 0.05, 0.0), (0.1, 0.0, 0.05, 0.0))]
    fast = [solver.solve(T, robot.HOME_Q, restarts=0) for T in poses]
    monkeypatch.setattr(ik_module, 'STALL_WINDOW', 10_000)
    full = [solver.solve(T, robot.HOME_Q, restarts=0) for T in poses]
    assert sum(r.success for r in full) >= 4
    assert not full[-1].success and solver.reachable(poses[-1])   # a stall, not the bound
    for a, b in zip(fast, full):
        assert a.success == b.success
        if a.success:
            np.testing.assert_allclose(a.q, b.q, atol=1e-12)
    monkeypatch.undo()
    # A retreat recorded in the sim: the arm folded at joint 4's limit over a place near the
    # base. The error sits at 2.3 mm for a while, then crawls off the limit and converges
    # after 90 iterations: slow progress is not a stall.
    c, s = 0.7335533582844932, 0.6796318639892789
    T = make_transform([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]],
                       [0.28642293501665494, 0.013045157839519053, 0.11994454638221033])
    seed = [0.027529450824125223, -0.08847864351775632, 0.024766122678139955,
            -3.0654598650196516, 0.017722062994373296, 2.9771691352735656,
            0.07269404818892071]
    res = solver.solve(T, seed, restarts=0)
    assert res.success and solver.last_iterations > 60


def test_approach_near_the_base_is_solved_from_the_grasp_up():
    # Near the robot's base the pre-grasp configuration solved first can be one from which
    # the straight way down turns the wrist over (a 0.52 rad jump at the grasp); the
    # approach solved from the grasp up, and reversed, comes down without one.
    ik = MinkIK()
    fy, fz = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    T = make_transform(np.stack([np.cross(fy, fz), fy, fz], axis=1), [0.285, 0.02, 0.05])
    params = ExecutorParams()   # the node's workspace
    steps = plan_pick_place(T, np.array([[0.285, 0.02, 0.1], [0.5, 0.2, 0.05]]), robot.HOME_Q,
                            ik, params, place=np.array([0.5, 0.1, 0.05]))
    approach = next(s for s in steps if s.name == 'approach')
    pre = next(s for s in steps if s.name == 'pre-grasp')
    path = np.vstack([pre.positions[-1:], approach.positions])
    assert np.max(np.abs(np.diff(path, axis=0))) <= params.max_joint_jump
    np.testing.assert_allclose(ik.forward(approach.positions[-1])[:3, 3], T[:3, 3], atol=2e-3)


def test_near_base_grasp_is_planned_through_another_arm_configuration():
    # A top-down grasp 0.285 m from the base (seed 2's potted meat can): from the arm's
    # pose the solver settles in a configuration whose straight way down (and lift) turns
    # the wrist over (a 0.7 rad jump), the same from the grasp up. Another IK branch of the
    # grasp follows both lines: the plan goes through it, with no joint jump anywhere.
    ik = MinkIK()
    fy, fz = np.array([np.cos(np.deg2rad(15.0)), np.sin(np.deg2rad(15.0)), 0.0]), \
        np.array([0.0, 0.0, -1.0])
    T = make_transform(np.stack([np.cross(fy, fz), fy, fz], axis=1), [0.285, 0.018, 0.05])
    params = ExecutorParams()   # the node's workspace
    args = (T, np.array([[0.285, 0.02, 0.1], [0.5, 0.2, 0.05]]), robot.HOME_Q)
    plain = MinkIK()
    plain.joint_limits = None   # no configuration search: the refusal seen in the sim
    with pytest.raises(IKError, match='configuration change'):
        plan_pick_place(*args, plain, params, place=np.array([0.5, 0.1, 0.05]))
    steps = plan_pick_place(*args, ik, params, place=np.array([0.5, 0.1, 0.05]))
    path = np.vstack([s.positions for s in steps if s.kind == 'arm'])
    free = len(steps[0].positions)   # the pre-grasp is a free move from the arm's pose
    assert np.max(np.abs(np.diff(path[free - 1:], axis=0))) <= params.max_joint_jump
    approach = next(s for s in steps if s.name == 'approach')
    np.testing.assert_allclose(ik.forward(approach.positions[-1])[:3, 3], T[:3, 3], atol=2e-3)
    assert np.all(path >= ik.joint_limits[0] - 1e-6) and np.all(path <= ik.joint_limits[1] + 1e-6)
    # The free move to the other branch keeps the hand above the pre-grasp (a branch whose
    # move swung the hand down by the base knocked the can away in the sim).
    pre_z = steps[0].targets[-1][2, 3]
    for t in np.linspace(0.0, 1.0, 41):
        T_t = ik.forward(robot.HOME_Q + t * (steps[0].positions[-1] - robot.HOME_Q))
        assert T_t[2, 3] > pre_z - 0.011
    from bopask_ros.executor import free_move_stays_above
    low = np.array([2.16, 1.76, -1.23, -2.93, 1.95, 1.45, 1.13])   # such a branch
    assert not free_move_stays_above(ik, robot.HOME_Q, low, pre_z)


def test_recorded_near_base_request_is_planned(ik):
    # Seed 2's potted meat can by the robot's base (see the fixture's description): every
    # carry height and yaw was refused with a configuration change at the lift.
    req, params = far_reach_request('executor_request_near_base.json')
    steps = plan_request(req, params, ik)
    arm = [s for s in steps if s.kind == 'arm']
    path = np.vstack([s.positions for s in arm])
    assert np.max(np.abs(np.diff(path[len(arm[0].positions) - 1:], axis=0))) <= \
        params.max_joint_jump
    for step in arm:
        np.testing.assert_allclose(ik.forward(step.positions[-1])[:3, 3],
                                   step.targets[-1][:3, 3], atol=2e-3)


def test_grasp_out_of_reach_is_refused_as_such(ik):
    # Seed 0's potted meat can: grasped 0.644 m out, tilted 58 degrees toward the robot
    # (the hand beyond the can). The grasp itself puts the wrist 0.78 m from the shoulder
    # (the arm reaches 0.72 m): the refusal says so, not only that the pre-grasp failed.
    g, pre = np.array([0.644, -0.029, 0.052]), np.array([0.743, -0.049, 0.116])
    z = (g - pre) / np.linalg.norm(g - pre)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    T = make_transform(np.stack([x, np.cross(z, x), z], axis=1), g)
    assert ik._ik.wrist_distance(T) > ik._ik.reach.wrist + 0.05
    with pytest.raises(IKError, match=r'IK failed for pre-grasp.*; the grasp at \(0.644, '
                                      r"-0.029, 0.052\) m, tilted 58 deg, is itself out of "
                                      r"the arm's reach"):
        plan_pick_place(T, np.array([[0.644, -0.029, 0.1], [0.5, 0.2, 0.05]]), robot.HOME_Q,
                        ik, ExecutorParams(), place=np.array([0.5, 0.1, 0.05]))


def test_self_collision_is_found_in_a_configuration_and_on_the_way_to_it(ik):
    from bopask_ros.executor import check_self_collision, Step
    folded = np.array([1.07, -1.16, -1.39, -2.98, -1.33, 1.94, 0.98])   # link 5 in link 1
    assert ik.self_collision(robot.HOME_Q) is None
    assert ik.self_collision(folded) == ('panda_link1', 'panda_link5')
    plan = [Step('pre-grasp', 'arm', positions=folded[None], times=np.ones(1))]
    with pytest.raises(IKError, match=r'hit itself \(panda_link1 and panda_link5\) in the '
                                      r'move to pre-grasp'):
        check_self_collision(ik, plan, robot.HOME_Q)
    check_self_collision(ik, [Step('pre-grasp', 'arm', positions=np.array([robot.HOME_Q]),
                                   times=np.ones(1))], robot.HOME_Q)


def test_recorded_self_colliding_branch_is_not_planned(ik):
    # The demo's foam brick by the robot's base (see the fixture's description): the only
    # plan found went through a configuration with the arm in itself. Refused now, or a
    # plan whose every configuration is clear.
    from bopask_ros.executor import check_self_collision
    req, params = far_reach_request('executor_request_self_collision.json')
    try:
        steps = plan_request(req, params, ik)
    except IKError as exc:
        assert 'configuration change' in str(exc) or 'hit itself' in str(exc)
        return
    check_self_collision(ik, steps, robot.HOME_Q)
