"""``bopask record OUT_BAG``: record the camera, commands and sim ground truth to rosbag2.

Subscribes with rclpy (serialized, so the bytes on the wire are stored unchanged) to

- ``/camera/camera/color/image_raw``, ``/camera/camera/aligned_depth_to_color/image_raw``,
  ``/camera/camera/color/camera_info`` (realsense-ros names: a real camera or the sim),
- ``/bopask/command`` (std_msgs/String),
- ``/bopask/sim/ground_truth`` (std_msgs/String JSON, published by the sim camera; see
  ``ground_truth.py``; simply absent with a real camera),

or the topics given with ``--topics``, and writes a rosbag2 directory with ``rosbags``
(MCAP by default, ``--storage sqlite3`` on request) that ``ros2 bag info``/``ros2 bag play``
and Foxglove read. Log times are the receive times (like ``ros2 bag record``); header stamps
are inside the messages, untouched. Topics whose type is not known in advance are
discovered from the graph; a QoS best-effort publisher gets a best-effort subscription.

Example (sim)::

    bopask launch pick_place &
    bopask record session_bag --duration 20 &
    bopask command "pick up the mustard bottle and put it next to the soup can"
"""

import threading
import time

from bopask_ros import ros_common as rc
from bopask_ros.bag_io import BagError, message_class, STORAGES, ThreadedBagWriter
from bopask_ros.ground_truth import GROUND_TRUTH_TOPIC, SCHEMA

DEFAULT_TOPICS = (rc.COLOR_TOPIC, rc.DEPTH_TOPIC, rc.INFO_TOPIC, rc.COMMAND_TOPIC,
                  GROUND_TRUTH_TOPIC)
KNOWN_TYPES = {
    rc.COLOR_TOPIC: 'sensor_msgs/msg/Image',
    rc.DEPTH_TOPIC: 'sensor_msgs/msg/Image',
    rc.INFO_TOPIC: 'sensor_msgs/msg/CameraInfo',
    rc.COMMAND_TOPIC: 'std_msgs/msg/String',
    GROUND_TRUTH_TOPIC: 'std_msgs/msg/String',
    rc.STATUS_TOPIC: 'std_msgs/msg/String',
    rc.KEYPOINTS_TOPIC: 'std_msgs/msg/String',
    rc.GRASP_REQUEST_TOPIC: 'std_msgs/msg/String',
}


def add_arguments(parser):
    """Arguments of ``bopask record``."""
    parser.add_argument('out', metavar='OUT_BAG', help='rosbag2 directory to create (must not '
                        'exist)')
    parser.add_argument('--duration', type=float, default=None,
                        help='stop after this many seconds (default: until Ctrl-C)')
    parser.add_argument('--topics', nargs='+', default=list(DEFAULT_TOPICS),
                        help='topics to record (default: camera, command, ground truth)')
    parser.add_argument('--storage', choices=STORAGES, default='mcap',
                        help='rosbag2 storage plugin (default mcap)')


class Recorder:
    """Records topics of a running graph into a new bag; ``start()``, then ``stop()``."""

    def __init__(self, context, out, topics=DEFAULT_TOPICS, storage='mcap', logger=None):
        from rclpy.node import Node
        self.node = Node('bopask_recorder', context=context)
        self.writer = ThreadedBagWriter(out, storage)
        # Says where the bag comes from (and keeps metadata.yaml's custom_data a map).
        self.writer.set_custom_data('bopask.recorder', 'bopask record')
        self.writer.set_custom_data('bopask.ground_truth_schema', SCHEMA)
        self.topics = list(dict.fromkeys(topics))
        self.pending = {t: KNOWN_TYPES.get(t) for t in self.topics}
        self.log = logger or (lambda text: self.node.get_logger().info(text))
        self._lock = threading.Lock()
        self._closed = False
        self._subs = []
        self._executor = None
        self._thread = None
        self._subscribe_known()
        # Topics of unknown type: looked up in the graph until they appear.
        self.node.create_timer(0.25, self._discover)

    def _qos(self, topic):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        try:
            infos = self.node.get_publishers_info_by_topic(topic)
        except Exception:  # noqa: BLE001 - graph query failed: default QoS
            infos = []
        best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                          for i in infos)
        return QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT if best_effort
                          else ReliabilityPolicy.RELIABLE)

    def _subscribe(self, topic, msgtype):
        cls = message_class(msgtype)
        if cls is None or not self.writer.knows(msgtype):
            self.log(f'warning: not recording {topic}: message type {msgtype} unknown here')
            return
        self.writer.add_topic(topic, msgtype)
        self._subs.append(self.node.create_subscription(
            cls, topic, lambda raw, t=topic: self._on_message(t, raw), self._qos(topic),
            raw=True))

    def _subscribe_known(self):
        for topic, msgtype in list(self.pending.items()):
            if msgtype is not None:
                self._subscribe(topic, msgtype)
                del self.pending[topic]

    def _discover(self):
        if not self.pending:
            return
        for topic, types in self.node.get_topic_names_and_types():
            if topic in self.pending and types:
                del self.pending[topic]
                self._subscribe(topic, types[0])

    def _on_message(self, topic, raw):
        t_ns = self.node.get_clock().now().nanoseconds
        with self._lock:
            if not self._closed:
                self.writer.write(topic, t_ns, raw)

    def start(self):
        """Spin the recorder on a background thread."""
        from rclpy.executors import SingleThreadedExecutor
        self._executor = SingleThreadedExecutor(context=self.node.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()
        return self

    def message_counts(self):
        """``{topic: messages written so far}``."""
        with self._lock:
            return dict(self.writer.counts)

    def stop(self):
        """Stop recording, finish the bag; return ``{topic: message count}``."""
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=5.0)
            self._thread.join(timeout=5.0)
        with self._lock:
            self._closed = True
            self.writer.close()
        self.node.destroy_node()
        return dict(self.writer.counts)


def run(args):
    """Entry point of ``bopask record``."""
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=rc.domain_id())
    try:
        recorder = Recorder(context, args.out, args.topics, args.storage, logger=print)
    except BagError as exc:
        print(f'record: {exc}')
        rclpy.try_shutdown(context=context)
        return 2
    recorder.start()
    print(f'bopask record: writing {args.out} ({args.storage}): {", ".join(recorder.topics)}; '
          + ('Ctrl-C to stop' if args.duration is None else f'{args.duration:g} s'), flush=True)
    try:
        if args.duration is None:
            while True:
                time.sleep(0.5)
        else:
            time.sleep(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        counts = recorder.stop()
        rclpy.try_shutdown(context=context)
    for topic in recorder.topics:
        print(f'  {topic}: {counts.get(topic, 0)} messages')
    if not any(counts.values()):
        print(f'record: warning: no message received on {recorder.topics} '
              f'(ROS_DOMAIN_ID {rc.domain_id()}); is the graph running?')
    return 0
