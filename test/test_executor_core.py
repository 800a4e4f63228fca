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
