"""Helpers of the ROS tests: a private DDS domain per test process and a probe node."""

import os
import threading
import time

# One DDS domain per test process: other test runs on the machine never cross-talk.
DOMAIN_ID = 20 + os.getpid() % 70


def start_context():
    """A fresh rclpy context on this process's domain."""
    import rclpy
    os.environ['ROS_DOMAIN_ID'] = str(DOMAIN_ID)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    return ctx


class Probe:
    """A test-side node: publishes inputs, records status lines and robot commands."""

    def __init__(self, context):
        from rclpy.node import Node
        from std_msgs.msg import Float64, String
        from trajectory_msgs.msg import JointTrajectory

        from bopask_ros import ros_common as rc
        self.node = Node('bopask_test_probe', context=context)
        self.lock = threading.Lock()
        self.status, self.trajectories, self.gripper, self.topics = [], [], [], {}
        self.node.create_subscription(String, rc.STATUS_TOPIC, self._status, 100)
        self.node.create_subscription(JointTrajectory, rc.ARM_TRAJECTORY_TOPIC,
                                      lambda m: self._add(self.trajectories, m), 10)
        self.node.create_subscription(Float64, rc.GRIPPER_TOPIC,
                                      lambda m: self._add(self.gripper, m), 10)
        self.pubs = {}

    def _status(self, msg):
        self._add(self.status, msg.data)

    def _add(self, store, item):
        with self.lock:
            store.append(item)

    def listen(self, topic, msg_type):
        """Record every message on ``topic``."""
        store = self.topics.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, lambda m: self._add(store, m), 10)
        return store

    def publisher(self, topic, msg_type, qos=10):
        """A (cached) publisher."""
        if topic not in self.pubs:
            self.pubs[topic] = self.node.create_publisher(msg_type, topic, qos)
        return self.pubs[topic]

    def wait_status(self, pattern, start=0, timeout=20.0):
        """Wait for a status line containing ``pattern`` after index ``start``; return it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                for line in self.status[start:]:
                    if pattern in line:
                        return line
            time.sleep(0.02)
        with self.lock:
            raise AssertionError(f'no status line with {pattern!r}; got {self.status[start:]}')

    def wait_subscribers(self, topic, msg_type, timeout=10.0):
        """Wait until something subscribes to ``topic``."""
        pub = self.publisher(topic, msg_type)
        end = time.monotonic() + timeout
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.05)
        assert pub.get_subscription_count() > 0, f'nobody subscribes to {topic}'
        return pub
