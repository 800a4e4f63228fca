"""vlm node: language command + latest image -> model text -> parsed grasp keypoints + waypoints.

On ``/bopask/command`` (std_msgs/String) it takes the latest colour image, asks the backend the
generator's grasp and trajectory questions, parses the answers (``coords``: pixel, norm or
norm1000 -- the generator's formats) and publishes on ``/bopask/vlm/keypoints`` a
std_msgs/String with this JSON (pixel units, the image's stamp)::

    {"command_id": 3, "command": "...", "object": "mustard bottle", "target": "soup can",
     "stamp_ns": 1700000000000000000, "frame_id": "camera_color_optical_frame",
     "width": 640, "height": 480, "backend": "oracle",
     "grasp_px": [[u, v] x 5], "waypoints_px": [[u, v], ...], "texts": {...},
     "timing": {"command_time": <wall s>, "inference_ms": ...}}

plus an overlay image on ``/bopask/vlm/overlay``. Refusals (unreadable command, no image,
stale image older than ``max_image_age_s``, busy executor, unparseable model text, keypoints
outside the image) go to ``/bopask/status`` and nothing is published downstream.
Commands arriving while one is being answered or executed are rejected (not queued).
"""

import itertools
import threading

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile

from bopask_gen.core.errors import AnswerParseError
from bopask_ros import ros_common as rc
from bopask_ros.image_conversion import array_to_image, image_to_array
from bopask_ros.vlm import (
    ask,
    CommandError,
    draw_overlay,
    KeypointError,
    parse_command,
    ScriptedBackend,
)

DEFAULTS = {
    'backend': 'oracle',
    'model_path': '',
    'adapter_path': '',
    'coords': 'pixel',
    'trust_remote_code': False,
    'max_new_tokens': 128,
    'device': 'auto',
    'max_image_age_s': 1.0,
    'oracle_seed': 0,
    'oracle_max_tilt_deg': 60.0,
    'scripted_answers': [''],
}


def make_backend(p, logger=None):
    """Build the answering backend named by the parameters."""
    name = p['backend']
    if name == 'oracle':
        from bopask_ros.sim_runtime import get_runtime
        from bopask_ros.vlm_oracle import OracleBackend
        return OracleBackend(get_runtime(timeout=60.0), coords=p['coords'],
                             seed=p['oracle_seed'], max_tilt_deg=p['oracle_max_tilt_deg'])
    if name == 'transformers':
        from bopask_ros.vlm_transformers import TransformersBackend
        return TransformersBackend(p['model_path'], adapter_path=p['adapter_path'] or None,
                                   device=p['device'], max_new_tokens=p['max_new_tokens'],
                                   trust_remote_code=p['trust_remote_code'])
    if name == 'scripted':
        return ScriptedBackend([a for a in p['scripted_answers'] if a])
    raise ValueError(f'vlm backend {name!r}: use transformers, oracle or scripted')


class VlmNode(Node):
    """Thin ROS shell over ``bopask_ros.vlm.ask``."""

    def __init__(self, **kwargs):
        super().__init__('vlm_node', **kwargs)
        self.p = rc.declare(self, DEFAULTS)
        self.status = rc.StatusPublisher(self, 'vlm')
        self.backend = make_backend(self.p, self.get_logger())
        self.get_logger().info(f'vlm backend: {self.backend.name}')
        self._image = None
        self._image_lock = threading.Lock()
        self._busy_downstream = False
        self._answering = threading.Lock()
        self._ids = itertools.count(1)

        from sensor_msgs.msg import Image
        from std_msgs.msg import Bool, String
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        fast = ReentrantCallbackGroup()
        self.create_subscription(Image, rc.COLOR_TOPIC, self.on_image, 5, callback_group=fast)
        self.create_subscription(Bool, rc.BUSY_TOPIC, self.on_busy, latched, callback_group=fast)
        # Commands in their own group: a long inference does not block image updates.
        self.create_subscription(String, rc.COMMAND_TOPIC, self.on_command, 10,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.keypoints_pub = self.create_publisher(String, rc.KEYPOINTS_TOPIC, 10)
        self.overlay_pub = self.create_publisher(Image, rc.OVERLAY_TOPIC, 2)

    def on_image(self, msg):
        """Keep the latest colour image."""
        with self._image_lock:
            self._image = msg

    def on_busy(self, msg):
        """Track whether the executor is moving the arm."""
        self._busy_downstream = bool(msg.data)

    def on_command(self, msg):
        """Answer one command (or refuse it)."""
        command_time = rc.wall_time()
        command_id = next(self._ids)
        if self._busy_downstream or not self._answering.acquire(blocking=False):
            self.status(f'refused command {command_id} {msg.data!r}: busy with another '
                        f'command (rejected, not queued)', 'warn')
            return
        try:
            self._answer(command_id, msg.data, command_time)
        finally:
            self._answering.release()

    def _answer(self, command_id, text, command_time):
        try:
            command = parse_command(text)
        except CommandError as exc:
            self.status(f'refused command {command_id}: {exc}', 'error')
            return
        with self._image_lock:
            image_msg = self._image
        if image_msg is None:
            self.status(f'refused command {command_id}: no image received on {rc.COLOR_TOPIC}',
                        'error')
            return
        stamp_ns = rc.stamp_to_ns(image_msg.header.stamp)
        age = self.get_clock().now().nanoseconds - stamp_ns
        if age > self.p['max_image_age_s'] * 1e9:
            self.status(f'refused command {command_id}: stale image ({age / 1e9:.2f} s old, '
                        f'limit {self.p["max_image_age_s"]:.2f} s)', 'error')
            return
        try:
            rgb = image_to_array(image_msg)
            if image_msg.encoding == 'bgr8':
                rgb = rgb[:, :, ::-1]
        except ValueError as exc:
            self.status(f'refused command {command_id}: bad image ({exc})', 'error')
            return
        self.status(f'command {command_id}: "{command.text}" -> grasp {command.object_name!r}, '
                    f'place by {command.target_name!r}; asking {self.backend.name}')
        request = {}
        if self.backend.name == 'oracle':
            frame = self.backend.runtime.frame_at(stamp_ns)
            if frame is None:
                self.status(f'refused command {command_id}: the simulator no longer holds the '
                            f'frame of the image (stamp {stamp_ns})', 'error')
                return
            request['sim_frame'] = frame
        try:
            answer = ask(self.backend, rgb, command, self.p['coords'], request)
        except (AnswerParseError, KeypointError) as exc:
            self.status(f'refused command {command_id}: unusable {self.backend.name} answer: '
                        f'{exc}', 'error')
            return
        except Exception as exc:  # noqa: BLE001 - backend errors (oracle: no grasp/path)
            self.status(f'refused command {command_id}: {self.backend.name} backend failed: '
                        f'{exc}', 'error')
            return
        h, w = rgb.shape[:2]
        payload = {
            'command_id': command_id, 'command': command.text,
            'object': command.object_name, 'target': command.target_name,
            'stamp_ns': stamp_ns, 'frame_id': image_msg.header.frame_id,
            'width': w, 'height': h, 'backend': self.backend.name,
            'grasp_px': answer.grasp_px, 'waypoints_px': answer.waypoints_px,
            'texts': answer.texts,
            'timing': {'command_time': command_time, 'inference_ms': answer.inference_ms},
        }
        from std_msgs.msg import String
        payload['timing']['keypoints_sent'] = rc.wall_time()
        self.keypoints_pub.publish(String(data=rc.dumps(payload)))
        self.status(f'command {command_id}: {self.backend.name} answered in '
                    f'{answer.inference_ms:.0f} ms: grasp {answer.texts["grasp"]}, '
                    f'{len(answer.waypoints_px)} waypoints')
        overlay = draw_overlay(rgb, answer.grasp_px, answer.waypoints_px,
                               f'{self.backend.name}: {command.text}')
        self.overlay_pub.publish(array_to_image(overlay, 'rgb8', image_msg.header))


def main(args=None):
    """Run the node alone (``ros2 run bopask_ros vlm_node``)."""
    rc.spin_node(VlmNode, args, multithreaded=True)


if __name__ == '__main__':
    main()
