"""camera node: publishes colour, aligned depth and camera_info under realsense-ros names.

Topics: ``/camera/camera/color/image_raw`` (rgb8), ``/camera/camera/aligned_depth_to_color/
image_raw`` (16UC1, millimetres), ``/camera/camera/color/camera_info``; the three messages of
a frame carry the same stamp and the optical frame id ``camera_color_optical_frame``.

Backends:
- ``realsense``: a RealSense via pyrealsense2 (``camera_realsense.RealSenseSource``);
  stamps are the node clock at capture (ROS time, like realsense-ros' default).
- ``sim``: the MuJoCo world of the sim node in this process (``sim_runtime``); stamps are
  the wall-clock time of the render. Each render is published once, as soon as it is made
  (the runtime triggers a guard condition: no polling), at most ``publish_rate_hz`` a
  second; the sim node's ``camera_rate_hz`` sets how often it renders.
"""

import threading

import rclpy
from rclpy.node import Node

from bopask_ros import ros_common as rc
from bopask_ros.image_conversion import array_to_image, make_camera_info, metres_to_depth_mm

DEFAULTS = {
    'backend': 'sim',
    'frame_id': 'camera_color_optical_frame',
    'width': 640,
    'height': 480,
    'fps': 30,
    'serial': '',
    'publish_rate_hz': 10.0,   # sim: the most renders published per second
}


class CameraNode(Node):
    """Publishes RGB-D frames from a RealSense or the simulator."""

    def __init__(self, **kwargs):
        super().__init__('camera_node', **kwargs)
        self.p = rc.declare(self, DEFAULTS)
        from sensor_msgs.msg import CameraInfo, Image
        self.color_pub = self.create_publisher(Image, rc.COLOR_TOPIC, 5)
        self.depth_pub = self.create_publisher(Image, rc.DEPTH_TOPIC, 5)
        self.info_pub = self.create_publisher(CameraInfo, rc.INFO_TOPIC, 5)
        self._last_seq = -1
        self._stop = threading.Event()
        backend = self.p['backend']
        if backend == 'sim':
            from bopask_ros.sim_runtime import get_runtime
            self.runtime = get_runtime(timeout=60.0)
            from bopask_ros.ground_truth import GroundTruthPublisher  # issue 6: bag ground truth
            self.ground_truth = GroundTruthPublisher(self, self.runtime, self.p['frame_id'])
            self._min_period_ns = int(1e9 / float(self.p['publish_rate_hz']))
            self._last_stamp_ns = None
            # Woken by the sim thread after each render, instead of polling for new ones.
            self._frame_ready = self.create_guard_condition(self.publish_sim).trigger
            self.runtime.add_frame_listener(self._frame_ready)
        elif backend == 'realsense':
            from bopask_ros.camera_realsense import RealSenseSource
            self.source = RealSenseSource(self.p['width'], self.p['height'], self.p['fps'],
                                          self.p['serial'])
            self._thread = threading.Thread(target=self._realsense_loop, daemon=True)
            self._thread.start()
        else:
            raise ValueError(f'camera backend {backend!r}: use realsense or sim')
        self.get_logger().info(f'camera backend {backend}')

    def publish_arrays(self, rgb, depth_mm, K, stamp_ns, distortion=None):
        """Publish one frame (colour, aligned depth, camera_info) with one stamp."""
        from std_msgs.msg import Header
        header = Header(stamp=rc.ns_to_stamp(stamp_ns), frame_id=self.p['frame_id'])
        h, w = depth_mm.shape
        self.color_pub.publish(array_to_image(rgb, 'rgb8', header))
        self.depth_pub.publish(array_to_image(depth_mm, '16UC1', header))
        self.info_pub.publish(make_camera_info(K, w, h, header, distortion))

    def publish_sim(self):
        """Publish the sim's newest render (once per render, at most publish_rate_hz)."""
        frame = self.runtime.latest_frame()
        if frame is None or frame.seq == self._last_seq:
            return
        if self._last_stamp_ns is not None and \
                0 <= frame.stamp_ns - self._last_stamp_ns < self._min_period_ns:
            return
        self._last_seq, self._last_stamp_ns = frame.seq, frame.stamp_ns
        self.publish_arrays(frame.rgb, metres_to_depth_mm(frame.depth_m), frame.K,
                            frame.stamp_ns)
        self.ground_truth.publish(frame)

    def _realsense_loop(self):
        while not self._stop.is_set() and rclpy.ok():
            try:
                frame = self.source.read()
            except RuntimeError as exc:
                self.get_logger().warn(f'RealSense read failed: {exc}')
                continue
            stamp = self.get_clock().now().nanoseconds
            self.publish_arrays(frame.rgb, frame.depth_mm, frame.K, stamp, frame.distortion)

    def destroy_node(self):
        """Stop the capture thread and the device (or the sim's frame notifications)."""
        self._stop.set()
        if hasattr(self, '_frame_ready'):
            self.runtime.remove_frame_listener(self._frame_ready)
        if hasattr(self, 'source'):
            self._thread.join(timeout=2.0)
            self.source.close()
        return super().destroy_node()


def main(args=None):
    """Run the node alone (``ros2 run bopask_ros camera_node``)."""
    rc.spin_node(CameraNode, args)


if __name__ == '__main__':
    main()
