"""rosbag2 I/O, the ground-truth message, scoring functions and replay robustness (no sim).

Bags are written with ``rosbags`` (both storage plugins) from real rclpy-serialised messages;
the replay robustness test plays a bag with an unknown message type and a corrupt message
over real DDS.
"""

import json
import os
import shutil

import numpy as np
import pytest

from bopask_ros import replay_scoring as scoring
from bopask_ros import ros_common as rc
from bopask_ros.bag_io import BagError, BagReader, BagWriter, deserialize, serialize
from bopask_ros.ground_truth import (
    build_ground_truth,
    GROUND_TRUTH_TOPIC,
    GroundTruthError,
    parse_ground_truth,
)
from bopask_ros.replay_oracle import command_seed, perturb_points

DOMAIN_ID = 20 + (os.getpid() + 23) % 70


def _image(stamp_ns, encoding='rgb8', h=4, w=6):
    from std_msgs.msg import Header

    from bopask_ros.image_conversion import array_to_image
    arr = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3) if encoding == 'rgb8' \
        else np.full((h, w), 700, dtype=np.uint16)
    return array_to_image(arr, encoding, Header(stamp=rc.ns_to_stamp(stamp_ns),
                                                frame_id='camera_color_optical_frame'))


def _gt_text(stamp_ns):
    T_world_base = np.eye(4)
    T_world_base[:3, 3] = [-0.5, 0.0, 0.0]
    T_world_cam = np.eye(4)
    T_world_cam[:3, 3] = [0.5, 0.0, 0.6]
    T_obj = np.eye(4)
    T_obj[:3, 3] = [0.1, 0.2, 0.05]
    gt = build_ground_truth(stamp_ns, np.array([[500, 0, 319.5], [0, 500, 239.5], [0, 0, 1]]),
                            640, 480, T_world_cam, T_world_base, [(5, T_obj)],
                            {5: '006_mustard_bottle'}, joint_names=['panda_joint1'],
                            joint_positions=[0.1], gripper_opening=0.08,
                            aliases={5: ['mustard bottle']})
    return json.dumps(gt)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_round_trip_keeps_bytes_types_and_metadata(tmp_path, storage):
    from std_msgs.msg import String
    path = tmp_path / 'bag'
    with BagWriter(path, storage) as writer:
        for topic, msgtype in ((rc.COLOR_TOPIC, 'sensor_msgs/msg/Image'),
                               (rc.COMMAND_TOPIC, 'std_msgs/msg/String')):
            writer.add_topic(topic, msgtype)
        writer.write(rc.COLOR_TOPIC, 1_000, serialize(_image(123)))
        writer.write(rc.COMMAND_TOPIC, 2_000, serialize(String(data='pick up the can')))
    meta = (path / 'metadata.yaml').read_text()
    assert f'storage_identifier: {storage}' in meta and 'sensor_msgs/msg/Image' in meta
    with BagReader(path) as reader:
        assert [(t.topic, t.msgtype, t.count) for t in reader.topics()] == [
            (rc.COLOR_TOPIC, 'sensor_msgs/msg/Image', 1),
            (rc.COMMAND_TOPIC, 'std_msgs/msg/String', 1)]
        assert reader.start_ns == 1_000 and reader.duration_ns >= 1_000
        msgs = [(c.topic, t, deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]
    assert msgs[0][1] == 1_000 and rc.stamp_to_ns(msgs[0][2].header.stamp) == 123
    assert bytes(msgs[0][2].data) == bytes(_image(123).data)
    assert msgs[1][2].data == 'pick up the can'


def test_writer_refuses_an_existing_path_and_unknown_types(tmp_path):
    (tmp_path / 'exists').mkdir()
    with pytest.raises(BagError, match='exists'):
        BagWriter(tmp_path / 'exists')
    with pytest.raises(BagError, match='storage'):
        BagWriter(tmp_path / 'b', storage='rosbag1')
    writer = BagWriter(tmp_path / 'c')
    with pytest.raises(BagError, match='no_such_msgs/msg/Thing'):
        writer.add_topic('/x', 'no_such_msgs/msg/Thing')
    writer.close()


def _small_bag(path, storage='mcap', n=50):
    from std_msgs.msg import String
    with BagWriter(path, storage) as writer:
        writer.add_topic(rc.COMMAND_TOPIC, 'std_msgs/msg/String')
        for i in range(n):
            writer.write(rc.COMMAND_TOPIC, 10**9 + i, serialize(String(data='x' * 500)))
    return path


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_truncated_or_broken_bags_raise_errors_naming_the_bag(tmp_path, storage):
    good = _small_bag(tmp_path / 'good', storage)
    data_file = next(p for p in good.iterdir() if p.name != 'metadata.yaml')
    cases = {}
    cases['truncated'] = tmp_path / 'truncated'
    shutil.copytree(good, cases['truncated'])
    os.truncate(cases['truncated'] / data_file.name, data_file.stat().st_size // 2)
    cases['no_metadata'] = tmp_path / 'no_metadata'
    shutil.copytree(good, cases['no_metadata'])
    (cases['no_metadata'] / 'metadata.yaml').unlink()
    cases['bad_yaml'] = tmp_path / 'bad_yaml'
    shutil.copytree(good, cases['bad_yaml'])
    (cases['bad_yaml'] / 'metadata.yaml').write_text('rosbag2_bagfile_information: [1, {')
    cases['missing_storage'] = tmp_path / 'missing_storage'
    shutil.copytree(good, cases['missing_storage'])
    (cases['missing_storage'] / data_file.name).unlink()
    for name, path in cases.items():
        with pytest.raises(BagError) as info:
            with BagReader(path) as reader:
                list(reader.messages())
        assert str(path) in str(info.value), (name, info.value)
        if name == 'truncated':
            assert data_file.name in str(info.value)
    with pytest.raises(BagError, match='no such bag'):
        BagReader(tmp_path / 'absent')
    with pytest.raises(BagError, match='is a file'):
        BagReader(data_file)


def test_replay_cli_names_the_file_of_a_truncated_bag(tmp_path, capsys):
    from bopask_ros.cli import main
    bag = _small_bag(tmp_path / 'cut')
    mcap = next(bag.glob('*.mcap'))
    os.truncate(mcap, mcap.stat().st_size - 100)
    assert main(['replay', str(bag), '--report', str(tmp_path / 'r.md')]) == 2
    out = capsys.readouterr().out
    assert str(bag) in out and mcap.name in out and 'cannot open bag' in out
    assert not (tmp_path / 'r.md').exists()


def test_ground_truth_round_trip_and_refusals():
    gt = parse_ground_truth(_gt_text(42))
    assert gt.stamp_ns == 42 and gt.width == 640 and gt.objects[0].obj_id == 5
    # Camera pose in the base frame = inverse(base) @ camera (world).
    np.testing.assert_allclose(gt.T_base_camera[:3, 3], [1.0, 0.0, 0.6])
    np.testing.assert_allclose(gt.objects[0].T_base_obj[:3, 3], [0.6, 0.2, 0.05])
    np.testing.assert_allclose(gt.objects[0].T_camera_obj[:3, 3], [-0.4, 0.2, -0.55])
    assert gt.aliases_by_index() == {0: ['006_mustard_bottle', 'mustard bottle']}
    data = json.loads(_gt_text(1))
    del data['objects'][0]['T_base_obj']
    with pytest.raises(GroundTruthError, match='T_base_obj'):
        parse_ground_truth(json.dumps(data), 'bag x')
    data = json.loads(_gt_text(1))
    data['K'] = [[1, 2], [3, 4]]
    with pytest.raises(GroundTruthError, match="'K'"):
        parse_ground_truth(json.dumps(data))
    with pytest.raises(GroundTruthError, match='schema'):
        parse_ground_truth(json.dumps({'schema': 'other'}))
    with pytest.raises(GroundTruthError, match='not JSON'):
        parse_ground_truth('{')


def test_scoring_functions():
    T = np.eye(4)
    R = np.eye(4)
    a = np.deg2rad(30)
    R[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    R[:3, 3] = [0.03, 0.04, 0.0]
    assert scoring.grasp_centre_error(T, R) == pytest.approx(0.05)
    assert scoring.finger_axis_angle_deg(T, R) == pytest.approx(30.0)
    F = np.diag([-1.0, -1.0, 1.0, 1.0])   # fingers swapped: the same grasp
    assert scoring.finger_axis_angle_deg(T, F) == pytest.approx(0.0, abs=1e-6)
    path = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0.0]])
    assert scoring.path_error(path, path) == 0.0
    assert scoring.path_error(path + [0, 0, 0.1], path) == pytest.approx(0.1)
    assert scoring.path_error(np.array([[0.5, 0, 0]]), path) > 0
    lines = ['[vlm] command 4: "x" -> grasp', '[vlm] refused command 5: unusable oracle answer: '
             'no points', '[backprojection] refused command 4: no valid depth']
    assert scoring.command_ids(lines) == [4, 5]
    assert scoring.is_parse_failure(scoring.refusal_of(lines, 5))
    assert not scoring.is_parse_failure(scoring.refusal_of(lines, 4))
    rows = [{'outcome': 'scored', 'grasp_centre_error_m': 0.01},
            {'outcome': 'refused', 'parse_failure': True}]
    s = scoring.summarize(rows)
    assert s['scored'] == 1 and s['refusals'] == 1 and s['parse_failures'] == 1
    assert s['grasp_centre_error_m']['median'] == pytest.approx(0.01)


def test_perturbation_and_seeds():
    pts = np.array([[10.0, 10.0], [20.0, 10.0]])
    out = perturb_points(pts, (5, -2), 90.0)
    np.testing.assert_allclose(out, [[15, 8], [15, 18]], atol=1e-9)
    assert command_seed(0, 2**40 + 7, 'a') == command_seed(0, 2**40 + 7, 'a')
    assert command_seed(0, 2**40 + 7, 'a') != command_seed(0, 2**40 + 7, 'b')


def test_replay_skips_unknown_types_and_corrupt_messages_without_crashing(tmp_path):
    import rclpy
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_types_from_msg, get_typestore, Stores
    from std_msgs.msg import String

    from bopask_ros.bag_replay import replay
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg('int32 x', 'bopask_test_msgs/msg/Unknown'))
    path = tmp_path / 'odd'
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        odd = writer.add_connection('/odd', 'bopask_test_msgs/msg/Unknown', typestore=store)
        cmd = writer.add_connection(rc.COMMAND_TOPIC, 'std_msgs/msg/String', typestore=store)
        gt = writer.add_connection(GROUND_TRUTH_TOPIC, 'std_msgs/msg/String', typestore=store)
        msg_type = store.types['bopask_test_msgs/msg/Unknown']
        writer.write(odd, 10**9, store.serialize_cdr(msg_type(x=3),
                                                     'bopask_test_msgs/msg/Unknown'))
        writer.write(cmd, 10**9 + 10**6, b'\x00\x01\x00\x00\xff\xff\xff\x7fbroken')
        writer.write(gt, 10**9 + 2 * 10**6, serialize(String(data=_gt_text(5))))
        writer.write(cmd, 10**9 + 3 * 10**6, serialize(String(data='pick up the can')))
    logs = []
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        report = replay(path, context, rate=10.0, timeout=0.5, graph_wait_s=0.2,
                        log=logs.append)
    finally:
        rclpy.try_shutdown(context=context)
    assert report['skipped_topics'] == ['/odd']
    assert any('skipping /odd' in line and 'bopask_test_msgs/msg/Unknown' in line
               for line in logs), logs
    assert len(report['corrupt_messages']) == 1
    assert any('corrupt' in line and str(path) in line for line in logs), logs
    assert report['messages_published'] == 2 and not report['errors']
    # The command was played; no graph answered it.
    assert [r['outcome'] for r in report['rows']] == ['no answer']
    assert 'no answer 1' in scoring.render_markdown(report)


def test_recorder_discovers_types_of_other_topics_and_stores_the_wire_bytes(tmp_path):
    import threading
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import JointState

    from bopask_ros.bag_record import Recorder
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    topic = '/bopask_test/joint_states'
    try:
        node = Node('bopask_test_joint_source', context=context)
        pub = node.create_publisher(JointState, topic, 10)
        sent = []

        def tick():
            msg = JointState(name=['j1'], position=[0.1 * len(sent)])
            msg.header.stamp = rc.ns_to_stamp(10**9 + len(sent))
            sent.append(msg)
            pub.publish(msg)
        node.create_timer(0.05, tick)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        recorder = Recorder(context, tmp_path / 'js', [topic], 'sqlite3').start()
        end = time.monotonic() + 10.0
        while time.monotonic() < end and recorder.writer.counts.get(topic, 0) < 5:
            time.sleep(0.05)
        counts = recorder.stop()
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert counts[topic] >= 5
    with BagReader(tmp_path / 'js') as reader:
        assert [(t.topic, t.msgtype) for t in reader.topics()] == [
            (topic, 'sensor_msgs/msg/JointState')]
        got = [deserialize(raw, c.msgtype) for c, _, raw in reader.messages()]
    by_stamp = {rc.stamp_to_ns(m.header.stamp): m for m in sent}
    for msg in got:
        assert list(msg.position) == list(by_stamp[rc.stamp_to_ns(msg.header.stamp)].position)


def test_record_cli_writes_a_valid_bag_and_refuses_an_existing_path(tmp_path, capsys,
                                                                     monkeypatch):
    from bopask_ros.cli import main
    monkeypatch.setenv('ROS_DOMAIN_ID', str(DOMAIN_ID))
    out = tmp_path / 'quiet'
    assert main(['record', str(out), '--duration', '0.3', '--storage', 'sqlite3',
                 '--topics', rc.COMMAND_TOPIC]) == 0
    text = capsys.readouterr().out
    assert 'no message received' in text
    with BagReader(out) as reader:
        assert [(t.topic, t.count) for t in reader.topics()] == [(rc.COMMAND_TOPIC, 0)]
    assert main(['record', str(out), '--duration', '0.1']) == 2
    assert str(out) in capsys.readouterr().out


def test_a_bag_broken_during_playback_stops_with_an_error_naming_it(tmp_path):
    import rclpy
    from rclpy.node import Node
    from std_msgs.msg import String

    from bopask_ros.bag_replay import Player
    path = tmp_path / 'breaks'
    with BagWriter(path, 'sqlite3') as writer:
        writer.add_topic(rc.COMMAND_TOPIC, 'std_msgs/msg/String')
        for i in range(3000):
            writer.write(rc.COMMAND_TOPIC, 10**9 + i * 1000, serialize(String(data='x' * 999)))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    logs = []
    try:
        node = Node('bopask_test_player', context=context)
        reader = BagReader(path)
        db = next(path.glob('*.db3'))
        # The storage file loses two thirds of its pages after the bag was opened.
        os.truncate(db, db.stat().st_size // 3)
        player = Player(node, reader, rate=1000.0, publish_clock=False, log=logs.append)
        player.play()
        reader.close()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert len(player.errors) == 1 and str(path) in player.errors[0] and db.name in \
        player.errors[0], player.errors
    assert player.published < 3000
    assert any('error' in line for line in logs)


def test_replay_refuses_the_oracle_without_recorded_ground_truth(tmp_path, capsys,
                                                                 monkeypatch):
    from bopask_ros.cli import main
    monkeypatch.setenv('ROS_DOMAIN_ID', str(DOMAIN_ID))
    bag = _small_bag(tmp_path / 'real_camera', n=2)
    assert main(['replay', str(bag), '--graph', '--report', str(tmp_path / 'r.md')]) == 2
    out = capsys.readouterr().out
    assert str(bag) in out and 'oracle backend needs /bopask/sim/ground_truth' in out


def test_late_received_images_play_before_the_command_they_preceded(tmp_path):
    import rclpy
    from rclpy.node import Node
    from std_msgs.msg import String

    from bopask_ros.bag_replay import Player
    path = tmp_path / 'late'
    s = 10**18
    with BagWriter(path) as writer:
        writer.add_topic(rc.COLOR_TOPIC, 'sensor_msgs/msg/Image')
        writer.add_topic(rc.COMMAND_TOPIC, 'std_msgs/msg/String')
        writer.add_topic(GROUND_TRUTH_TOPIC, 'std_msgs/msg/String')
        writer.write(GROUND_TRUTH_TOPIC, s + 2_400_000_000, serialize(String(
            data=_gt_text(s + 2_300_000_000))))
        writer.write(rc.COMMAND_TOPIC, s + 2_700_000_000, serialize(String(data='go')))
        # The image captured at 2.3 s reached the recorder at 2.9 s, after the command.
        writer.write(rc.COLOR_TOPIC, s + 2_900_000_000, serialize(_image(s + 2_300_000_000)))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    try:
        node = Node('bopask_test_order', context=context)
        with BagReader(path) as reader:
            order = [(c.topic, t) for t, c, *_ in Player(node, reader)._ordered()]
            assert [c.topic for _, c, *_ in Player(node, reader, reorder_window_s=0)
                    ._ordered()] == [GROUND_TRUTH_TOPIC, rc.COMMAND_TOPIC, rc.COLOR_TOPIC]
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert order == [(GROUND_TRUTH_TOPIC, s + 2_300_000_000), (rc.COLOR_TOPIC, s + 2_300_000_000),
                     (rc.COMMAND_TOPIC, s + 2_700_000_000)]
