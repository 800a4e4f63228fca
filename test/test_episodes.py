"""Episode selection: commands only about objects the camera sees."""

import contextlib

import numpy as np
import pytest

from bopask_gen.core.transforms import transform_from_xyz_quat_xyzw
from bopask_ros import ros_common as rc
from bopask_ros.episodes import MIN_VISIBLE, visible_fractions


def camera_extrinsic():
    """T_base_camera of the simulated camera (config/extrinsics.yaml)."""
    p = rc.load_node_parameters(rc.config_path('extrinsics.yaml'), 'sim_node')
    return transform_from_xyz_quat_xyzw(p['extrinsic.translation'], p['extrinsic.rotation_xyzw'])


def episode_runtime(seed, obj_ids):
    """A running simulator with a random episode's world (as the demo builds it)."""
    from bopask_ros.sim_node import world_factory
    from bopask_ros.sim_runtime import SimRuntime
    return SimRuntime(world_factory(seed, obj_ids, (3, 5), camera_extrinsic()), 4.0, 5.0)


@contextlib.contextmanager
def episode_scene(seed, obj_ids):
    """(running simulator, its first frame) of a random episode's world, closed after."""
    runtime = episode_runtime(seed, obj_ids)
    try:
        yield runtime, runtime.wait_for_frame(timeout=30.0)
    finally:
        runtime.close()


def test_a_target_hidden_behind_a_box_is_not_visible():
    from bopask_ros.sim_node import make_world
    T_bc = camera_extrinsic()
    # Random-episode scene (bench seed 0, episode 14): the bowl stands behind the cracker box.
    world = make_world(426303516, [2, 5, 12, 13, 16], (3, 5), T_bc)
    try:
        vis = visible_fractions(world)
        ids = [o.obj_id for o in world.objects]
        assert vis[ids.index(13)] < MIN_VISIBLE            # bowl: hidden
        assert vis[ids.index(12)] > 0.5                    # bleach cleanser: in plain view
        assert np.all((vis >= 0.0) & (vis <= 1.0))
    finally:
        world.close()


def object_masks(runtime):
    """{obj_id: bool mask} of what the sim camera sees of each object."""
    return runtime.call(lambda w: {o.obj_id: w.render_segmentation() == o.index
                                   for o in w.objects})


def oracle_request(frame, task, command):
    """The vlm node's request to the oracle for ``command`` about ``frame``."""
    from bopask_ros.vlm import parse_command
    return {'sim_frame': frame, 'task': task, 'command': parse_command(command)}


def oracle_points(oracle, frame, request):
    """(N, 2) pixels of the oracle's answer, parsed as the vlm node parses it."""
    from bopask_gen.core.answer_format import parse_points
    h, w = frame.rgb.shape[:2]
    return parse_points(oracle.answer(frame.rgb, '', request), oracle.coords, w, h)


def test_oracle_does_not_point_at_a_grasp_hidden_behind_another_object():
    # Random-episode scene (bench seed 1, episode 10): the potted meat can stands behind the
    # wood block; the generator's best grasps of it have their centre pixel on the block.
    from bopask_ros.vlm_oracle import OracleBackend, OracleError
    with episode_scene(1969881820, [8, 9, 10, 16]) as (runtime, frame):
        request = oracle_request(frame, 'grasp', 'pick up the potted meat can and put it '
                                                 'next to the banana')
        # Among the generator's 3 best grasps (of this seed's draws: the oracle's are seeded
        # by the scene's objects and the command), none is centred on the can's visible
        # part: refused when the search stops there.
        narrow = OracleBackend(runtime, grasp_candidates=3, hidden_grasp_candidates=3)
        with pytest.raises(OracleError, match='hidden from the camera'):
            narrow.answer(frame.rgb, '', request)
        # Among more, one is: the answer's centre pixel is on the can (the sim's segmentation).
        oracle = OracleBackend(runtime)
        u, v = np.round(oracle_points(oracle, frame, request)[0]).astype(int)
        assert object_masks(runtime)[9][v, u]
        # The banana, in plain view, gets an answer.
        request = oracle_request(frame, 'grasp', 'pick up the banana and put it next to the '
                                                 'can')
        assert oracle.answer(frame.rgb, '', request)


def test_oracle_plans_onto_a_flat_target_crowded_by_a_tall_neighbour():
    # Random-episode scene (failure C): the scissors lie flat beside the pitcher; the mustard
    # bottle's box centred over the scissors touches the pitcher, so the generator used to
    # find no goal and the oracle refused the command.
    from bopask_ros.vlm_oracle import OracleBackend
    with episode_scene(1851384274, [5, 11, 12, 17]) as (runtime, frame):
        request = oracle_request(frame, 'trajectory', 'pick up the mustard bottle and put it '
                                                      'next to the scissors')
        path = oracle_points(OracleBackend(runtime), frame, request)
        masks = object_masks(runtime)
        u0, v0 = np.round(path[0]).astype(int)
        u1, v1 = np.round(path[-1]).astype(int)
        assert len(path) >= 3
        assert masks[5][v0, u0]          # starts on the mustard bottle
        assert masks[17][v1, u1]         # ends on the scissors the camera sees
        # The same question about the same scene gets the same answer, whatever was asked
        # before (the planner's draws are seeded by the scene and the command): a replayed
        # episode reproduces its first run.
        other = OracleBackend(runtime)
        oracle_points(other, frame, oracle_request(frame, 'grasp', 'pick up the bleach cleanser '
                                                   'and put it next to the pitcher'))
        np.testing.assert_array_equal(oracle_points(other, frame, request), path)


def test_a_runs_record_replays_its_episodes(tmp_path):
    import json

    from bopask_gen.generator.names import load_name_table
    from bopask_ros.demo import write_record
    from bopask_ros.episodes import replay_episodes
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    results = [
        {'seed': 11, 'obj_ids': [4, 5, 21, 3], 'success': True, 'before': image,
         'command': 'pick up the mustard bottle and put it next to the soup can'},
        {'seed': 12, 'obj_ids': [4, 9, 21, 14], 'success': False, 'after': image,
         'command': 'pick up the foam brick and put it next to the potted meat can'},
        {'seed': 13, 'command': 'pick up the sugar box and put it next to the bowl',
         'skipped': 'the target is 6% visible from the camera (< 15%)'},
    ]
    path = write_record(results, tmp_path / 'run.json')
    record = json.loads(path.read_text())
    assert all('before' not in r and 'after' not in r for r in record)   # no images
    names = load_name_table('ycbv')
    assert [e.seed for e in replay_episodes(record, names)] == [11, 12]    # skipped: not run
    (failed,) = replay_episodes(record, names, failed_only=True)
    assert (failed.obj_ids, failed.obj_id, failed.target_id) == ((4, 9, 21, 14), 21, 9)
