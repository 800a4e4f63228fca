"""Every refusal of the vlm, backprojection and executor nodes, over real DDS.

Real nodes (scripted VLM answers, mink IK) in a private domain; this test publishes their
inputs (camera images, joint states, keypoints, grasp requests) and checks that each bad
input gives a status line and never a trajectory or gripper command (the arm does not move).
"""

import importlib.util
import json
from pathlib import Path
import sys
import threading
import time

import numpy as np
import pytest

from bopask_gen.core.answer_format import format_points
from bopask_gen.core.transforms import make_transform
from bopask_gen.sim import robot
from bopask_ros import ros_common as rc
from bopask_ros.graph import node_parameters, resolve
from bopask_ros.image_conversion import array_to_image, make_camera_info
from bopask_ros.vlm import ScriptedBackend

_spec = importlib.util.spec_from_file_location('bopask_ros_test_helpers',
                                               Path(__file__).with_name('ros_helpers.py'))
ros_helpers = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ros_helpers
_spec.loader.exec_module(ros_helpers)
Probe, start_context = ros_helpers.Probe, ros_helpers.start_context

W, H = 640, 480
GRASP = np.array([[320, 240], [300, 200], [340, 200], [300, 240], [340, 240]], dtype=float)


@pytest.fixture(scope='module')
def graph():
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import JointState

    from bopask_ros.backprojection_node import BackprojectionNode
    from bopask_ros.executor_node import ExecutorNode
    from bopask_ros.vlm_node import VlmNode
    ctx = start_context()
    files, overrides, _ = resolve({'vlm_backend': 'scripted', 'camera_backend': 'realsense',
                                   'vlm_node.max_image_age_s': 0.5,
                                   'vlm_node.scripted_answers': ['unused']})

    def make(cls, name):
        return cls(context=ctx, parameter_overrides=rc.parameter_overrides(
            node_parameters(name, files, overrides)))
    nodes = {'vlm': make(VlmNode, 'vlm_node'),
             'backprojection': make(BackprojectionNode, 'backprojection_node'),
             'executor': make(ExecutorNode, 'executor_node')}
    probe = Probe(ctx)
    executor = MultiThreadedExecutor(num_threads=4, context=ctx)
    for node in list(nodes.values()) + [probe.node]:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    # The robot's joint states (arm at home), as a robot driver would publish them.
    js = probe.publisher(rc.JOINT_STATES_TOPIC, JointState)
    stop = threading.Event()

    def joint_states():
        while not stop.is_set():
            js.publish(JointState(name=list(robot.ARM_JOINTS) + list(robot.FINGER_JOINTS),
                                  position=list(robot.HOME_Q) + [0.04, 0.04]))
            time.sleep(0.05)
    threading.Thread(target=joint_states, daemon=True).start()
    yield nodes, probe
    stop.set()
    executor.shutdown(timeout_sec=5.0)
    for node in list(nodes.values()) + [probe.node]:
        node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def stamp_now(probe, age_s=0.0):
    return probe.node.get_clock().now().nanoseconds - int(age_s * 1e9)


def send_image(probe, age_s=0.0):
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    stamp = stamp_now(probe, age_s)
    header = Header(stamp=rc.ns_to_stamp(stamp), frame_id='camera_color_optical_frame')
    pub = probe.wait_subscribers(rc.COLOR_TOPIC, Image)
    pub.publish(array_to_image(np.full((H, W, 3), 90, np.uint8), 'rgb8', header))
    time.sleep(0.3)
    return stamp


def command(probe, text='pick up the mug and put it next to the bowl'):
    from std_msgs.msg import String
    probe.wait_subscribers(rc.COMMAND_TOPIC, String).publish(String(data=text))


def assert_arm_still(probe, wait=0.5):
    time.sleep(wait)
    assert probe.trajectories == [] and probe.gripper == []


def test_unparseable_model_text(graph):
    nodes, probe = graph
    nodes['vlm'].backend = ScriptedBackend(['I would grasp the mug by its handle.'])
    start = len(probe.status)
    send_image(probe)
    command(probe)
    line = probe.wait_status('refused', start)
    assert 'unusable scripted answer' in line and 'no points' in line
    assert_arm_still(probe)


def test_keypoints_outside_the_image(graph):
    nodes, probe = graph
    bad = GRASP.copy()
    bad[0] = [655, 100]
    nodes['vlm'].backend = ScriptedBackend([format_points(bad, 'pixel', W, H),
                                            '[(10, 10), (20, 20)]'])
    start = len(probe.status)
    send_image(probe)
    command(probe)
    assert 'grasp keypoint 0 at (655.0, 100.0) is outside the 640x480 image' in \
        probe.wait_status('refused', start)
    assert_arm_still(probe)


def test_stale_image(graph):
    nodes, probe = graph
    nodes['vlm'].backend = ScriptedBackend([format_points(GRASP, 'pixel', W, H),
                                            '[(10, 10), (20, 20)]'])
    start = len(probe.status)
    send_image(probe, age_s=3.0)
    command(probe)
    line = probe.wait_status('refused', start)
    assert 'stale image' in line and 'limit 0.50 s' in line
    assert_arm_still(probe)


def test_unreadable_command(graph):
    _, probe = graph
    start = len(probe.status)
    send_image(probe)
    command(probe, 'make me a sandwich')
    assert 'cannot read' in probe.wait_status('refused', start)
    assert_arm_still(probe)


def test_no_valid_depth(graph):
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header, String
    _, probe = graph
    requests = probe.listen(rc.GRASP_REQUEST_TOPIC, String)
    stamp = stamp_now(probe)
    header = Header(stamp=rc.ns_to_stamp(stamp), frame_id='camera_color_optical_frame')
    depth = np.full((H, W), 700, np.uint16)
    depth[220:260, 300:345] = 0        # a hole (black, shiny or too close) at the grasp
    probe.wait_subscribers(rc.DEPTH_TOPIC, Image).publish(
        array_to_image(depth, '16UC1', header))
    K = np.array([[430.0, 0, 319.5], [0, 430.0, 239.5], [0, 0, 1]])
    probe.wait_subscribers(rc.INFO_TOPIC, CameraInfo).publish(
        make_camera_info(K, W, H, header))
    time.sleep(0.3)
    start = len(probe.status)
    probe.wait_subscribers(rc.KEYPOINTS_TOPIC, String).publish(String(data=json.dumps({
        'command_id': 99, 'stamp_ns': stamp, 'grasp_px': GRASP.tolist(),
        'waypoints_px': [[100, 100], [200, 120]]})))
    line = probe.wait_status('refused command 99', start)
    assert 'no valid depth in the 5x5 window around grasp centre point 0' in line
    assert requests == []
    assert_arm_still(probe)


def grasp_request(command_id, position, target):
    fy, fz = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    T = make_transform(np.stack([np.cross(fy, fz), fy, fz], axis=1), position)
    return json.dumps({'command_id': command_id, 'frame_id': 'panda_link0',
                       'grasp': {'T': T.tolist(), 'width': 0.05},
                       'waypoints': [list(position), list(target)],
                       'target_point': list(target)})


def test_target_outside_the_workspace(graph):
    from std_msgs.msg import String
    _, probe = graph
    start = len(probe.status)
    probe.wait_subscribers(rc.GRASP_REQUEST_TOPIC, String).publish(
        String(data=grasp_request(7, [0.95, 0.1, 0.05], [0.5, 0.0, 0.05])))
    line = probe.wait_status('refused command 7', start)
    assert 'outside the workspace box' in line and 'pre-grasp target (0.950' in line
    assert_arm_still(probe)


def test_ik_failure(graph):
    from std_msgs.msg import String
    _, probe = graph
    start = len(probe.status)
    # Inside the workspace box, but a top-down hand there is out of the Panda's reach.
    probe.wait_subscribers(rc.GRASP_REQUEST_TOPIC, String).publish(
        String(data=grasp_request(8, [0.84, 0.49, 0.3], [0.5, 0.0, 0.05])))
    line = probe.wait_status('refused command 8', start)
    assert 'IK failed for pre-grasp' in line
    assert_arm_still(probe)


def test_dry_run_plans_but_sends_nothing(graph):
    from std_msgs.msg import String
    nodes, probe = graph
    start = len(probe.status)
    nodes['executor'].p['dry_run'] = True
    try:
        # A reachable pick in front of the robot: planned, reported, not executed.
        probe.wait_subscribers(rc.GRASP_REQUEST_TOPIC, String).publish(
            String(data=grasp_request(9, [0.5, 0.0, 0.05], [0.5, 0.2, 0.05])))
        line = probe.wait_status('command 9: dry run', start)
        assert 'nothing sent' in line
        assert any('command 9: planned' in s for s in probe.status[start:])
        assert_arm_still(probe)
    finally:
        nodes['executor'].p['dry_run'] = False
