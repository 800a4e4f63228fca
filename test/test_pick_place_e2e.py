"""End to end over real DDS: sim camera -> oracle VLM -> back-projection -> IK executor -> sim.

The graph is the one ``bopask demo`` starts (the nodes of ``bopask launch pick_place``; the
back-projection and executor nodes in a child process, as the demo runs them). The command
"pick up the mustard bottle and put it next to the soup can" must lift the mustard bottle in
the physics and leave it next to the soup can; a second command sent while the first one
runs is rejected with a status line (commands are not queued) and does not disturb it.
"""

import os
import re
import time

import numpy as np
import pytest

from bopask_gen.generator.names import load_name_table
from bopask_ros.episodes import demo_episodes, footprint_radii, judge, LIFT_MIN, NEAR_GAP

DOMAIN_ID = 20 + (os.getpid() + 35) % 70


@pytest.fixture(scope='module')
def sim_graph():
    from bopask_ros.demo import start_graph
    os.environ['ROS_DOMAIN_ID'] = str(DOMAIN_ID)
    graph, client = start_graph({}, real_time_factor=2.0)
    yield graph, client
    graph.shutdown()


def test_language_command_moves_the_named_object_next_to_the_target(sim_graph):
    from bopask_ros.demo import object_positions
    from bopask_ros.sim_node import world_factory
    graph, client = sim_graph
    episode = demo_episodes(load_name_table('ycbv'))[0]
    assert 'mustard bottle' in episode.command
    runtime = graph.runtime
    runtime.reset(world_factory(episode.seed, list(episode.obj_ids), (3, 5),
                                graph.nodes['sim_node'].T_base_camera))
    ids = runtime.call(lambda w: [o.obj_id for o in w.objects])
    runtime.wait_for_frame(timeout=10.0)
    time.sleep(0.6)
    start = object_positions(runtime)
    runtime.start_tracking()
    mark = client.mark()
    client.send(episode.command)

    # While the arm moves, a second command is rejected (not queued).
    end = time.monotonic() + 90.0
    while time.monotonic() < end and \
            not any('step 1/' in s for s in client.new_status(mark)):
        time.sleep(0.05)
    assert any('step 1/' in s for s in client.new_status(mark)), client.new_status(mark)
    client.send('pick up the foam brick and put it next to the sugar box')
    kind, result = client.wait_end(mark, timeout=90.0, stop_on_refusal=False)
    status = client.new_status(mark)
    assert any('busy with another command (rejected, not queued)' in s for s in status), status
    assert kind == 'result' and result['outcome'] == 'done', (kind, result, status)
    assert result['timing']['command_to_trajectory_ms'] > 0
    assert result['timing']['backprojection_ms'] > 0
    time.sleep(1.0)

    # Judged in physics, from the simulator's object poses.
    outcome = judge(start, object_positions(runtime), runtime.max_heights(),
                    ids.index(episode.obj_id), ids.index(episode.target_id),
                    runtime.call(footprint_radii))
    assert outcome.rise >= LIFT_MIN, outcome
    assert outcome.gap <= NEAR_GAP, outcome
    assert outcome.success
    # Only the mustard bottle moved.
    others = [i for i in range(len(ids)) if i != ids.index(episode.obj_id)]
    moved = np.linalg.norm(object_positions(runtime)[others] - start[others], axis=1)
    assert np.all(moved < 0.02), moved
    # The oracle is named as such in the status lines.
    assert any('[vlm]' in s and 'oracle answered' in s for s in status)


def test_a_grasp_that_closes_on_nothing_stops_before_lifting(sim_graph):
    """A grasp on empty table: the hand closes on nothing, so the arm must not lift or carry."""
    import json

    from std_msgs.msg import String

    from bopask_gen.core.transforms import invert_transform, make_transform, transform_points
    from bopask_ros import ros_common as rc
    from bopask_ros.demo import object_positions
    graph, client = sim_graph
    runtime = graph.runtime
    runtime.wait_for_frame(timeout=10.0)
    T_base_world = invert_transform(runtime.call(lambda w: w.T_world_base))
    objects = transform_points(T_base_world, object_positions(runtime))
    # A reachable spot on the table at least 12 cm from every object.
    spots = [np.array([x, y, 0.02]) for x in (0.35, 0.45, 0.55) for y in (-0.3, 0.0, 0.3)]
    spot = next(p for p in spots
                if np.min(np.linalg.norm(objects[:, :2] - p[:2], axis=1)) > 0.12)
    fy, fz = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    T = make_transform(np.stack([np.cross(fy, fz), fy, fz], axis=1), spot)
    request = {'command_id': 901, 'frame_id': 'panda_link0',
               'grasp': {'T': T.tolist(), 'width': 0.04},
               'waypoints': [spot.tolist(), (spot + [0.0, 0.1, 0.0]).tolist()]}
    pub = client.node.create_publisher(String, rc.GRASP_REQUEST_TOPIC, 10)
    mark = client.mark()
    time.sleep(0.5)
    pub.publish(String(data=json.dumps(request)))
    kind, result = client.wait_end(mark, timeout=90.0, stop_on_refusal=False)
    status = client.new_status(mark)
    assert kind == 'result' and result['outcome'] == 'failed', (kind, result, status)
    assert 'gripper closed on nothing' in result['reason'], result
    # The close step ran; no lift step was ever started.
    assert any(re.search(r'command 901: step \d+/\d+ close', s) for s in status), status
    assert not any(re.search(r'command 901: step \d+/\d+ lift', s) for s in status), status
