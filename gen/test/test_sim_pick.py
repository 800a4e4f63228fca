"""Panda IK and the scripted pick: a ground-truth grasp lifts its object in physics."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bopask_gen.core.gripper import flip_about_approach
from bopask_gen.core.transforms import make_transform, rotation_angle_between, transform_points
from bopask_gen.sim.ik import PandaIK, solve_tcp_ik
from bopask_gen.sim.pick import execute_pick, LIFT_SUCCESS
from bopask_gen.sim.synth import generate_dataset
from bopask_gen.sim.world import World


def top_down_grasp(world, index):
    """A GT grasp from the object's pose: from above, fingers across its narrower side."""
    obj = world.objects[index]
    T = world.object_pose(index)
    verts = transform_points(T, obj.mesh.vertices)
    best = None
    for angle in np.linspace(0, np.pi, 36, endpoint=False):
        y = np.array([np.cos(angle), np.sin(angle), 0.0])
        width = np.ptp(verts @ y)
        if best is None or width < best[1]:
            best = (y, width)
    y, width = best
    z = np.array([0.0, 0.0, -1.0])
    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2.0
    tcp = [centre[0], centre[1], max(verts[:, 2].max() - 0.03, 0.012)]
    return make_transform(np.stack([np.cross(y, z), y, z], axis=1), tcp), float(width)


@pytest.fixture(scope='module')
def ik():
    return PandaIK()


def test_ik_reaches_a_pose_and_refuses_an_unreachable_one(ik):
    target = make_transform(np.diag([1.0, -1.0, -1.0]), [0.5, 0.1, 0.2])
    res = ik.solve(target)
    assert res.success, res.message
    T = ik.forward(res.q)
    assert T[:3, 3] == pytest.approx(target[:3, 3], abs=1e-3)
    assert rotation_angle_between(T, target) < np.deg2rad(0.5)
    far = make_transform(np.eye(3), [2.0, 0.0, 0.3])
    bad = ik.solve(far)
    assert not bad.success and bad.q is None and 'out of reach' in bad.message
    res, flipped = ik.solve_grasp(flip_about_approach(target))
    assert res.success
    # The shared-solver shortcut: world targets with a shifted base.
    base = make_transform(np.eye(3), [-0.5, 0.0, 0.0])
    shifted = target.copy()
    shifted[0, 3] -= 0.5
    q = solve_tcp_ik(shifted, base)
    assert q is not None and q.shape == (7,)
    assert solve_tcp_ik(far, base) is None


@pytest.mark.parametrize('obj_id', [4, 21])  # tomato soup can, foam brick
def test_scripted_pick_of_a_gt_grasp_lifts_the_object(ik, obj_id):
    world = World(obj_ids=[obj_id, 6], seed=2, camera=False)
    ik.set_base(world.T_world_base)
    T_grasp, width = top_down_grasp(world, 0)
    assert width < 0.075
    result = execute_pick(world, ik, 0, T_grasp, width)
    assert result.lifted, result.reason
    assert result.rise >= LIFT_SUCCESS
    assert 0.0 < result.grip_width < width + 0.005
    # The other object stayed where it was.
    assert world.object_speeds()[1] < 0.05


def test_pick_fails_when_the_grasp_misses(ik):
    world = World(obj_ids=[21], seed=2, camera=False)
    ik.set_base(world.T_world_base)
    T_grasp, width = top_down_grasp(world, 0)
    T_grasp[0, 3] += 0.12  # 12 cm beside the object: nothing between the fingers
    result = execute_pick(world, ik, 0, T_grasp, width)
    assert not result.lifted
    assert 'nothing' in result.reason or 'rose only' in result.reason


def test_grasp_check_reports_one_json_line(tmp_path):
    data = tmp_path / 'ycbv_synth'
    generate_dataset(data, 1, 1, seed=11, progress=False)
    out = subprocess.run([sys.executable, '-m', 'bopask_gen.cli', 'grasp-check', str(data),
                          '--max-objects', '2'], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(summary) >= {'objects', 'lifted', 'success_rate', 'failures'}
    assert 1 <= summary['objects'] <= 2
    assert summary['success_rate'] == pytest.approx(summary['lifted'] / summary['objects'])
    assert len(summary['failures']) == summary['objects'] - summary['lifted']
