"""RealSense backend with frames injected through pyrealsense2's software_device."""

import numpy as np
import pyrealsense2 as rs
import pytest

from bopask_ros.camera_realsense import frameset_to_frame

W, H = 64, 48
STARTED_SENSORS = []


@pytest.fixture(autouse=True)
def stop_started_sensors():
    """Stop and close the software sensors after each test: no streaming thread outlives it."""
    yield
    while STARTED_SENSORS:
        sensor = STARTED_SENSORS.pop()
        sensor.stop()
        sensor.close()


def _intrinsics(fx):
    intr = rs.intrinsics()
    intr.width, intr.height = W, H
    intr.fx = intr.fy = fx
    intr.ppx, intr.ppy = 32.0, 24.0
    intr.model = rs.distortion.none
    intr.coeffs = [0.0] * 5
    return intr


def _stream(kind, fmt, bpp, uid, fx):
    s = rs.video_stream()
    s.type, s.fmt, s.bpp, s.uid, s.index = kind, fmt, bpp, uid, 0
    s.width, s.height, s.fps = W, H, 30
    s.intrinsics = _intrinsics(fx)
    return s


def inject(depth_raw, color, color_fmt=rs.format.rgb8, depth_units=0.001):
    """Feed one depth + colour frame pair through a software device; return the frameset."""
    dev = rs.software_device()
    depth_sensor, color_sensor = dev.add_sensor('Depth'), dev.add_sensor('Color')
    dp = depth_sensor.add_video_stream(_stream(rs.stream.depth, rs.format.z16, 2, 1, 50.0))
    cp = color_sensor.add_video_stream(_stream(rs.stream.color, color_fmt, 3, 2, 50.0))
    depth_sensor.add_read_only_option(rs.option.depth_units, depth_units)
    ex = rs.extrinsics()
    ex.rotation, ex.translation = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], [0.0, 0.0, 0.0]
    dp.register_extrinsics_to(cp, ex)
    sync = rs.syncer()
    depth_sensor.open(dp)
    color_sensor.open(cp)
    depth_sensor.start(sync)
    color_sensor.start(sync)
    STARTED_SENSORS.extend([depth_sensor, color_sensor])
    keep = []
    for i in range(3):   # the syncer pairs frames once a few have arrived
        for sensor, profile, pixels, bpp in ((depth_sensor, dp, depth_raw, 2),
                                             (color_sensor, cp, color, 3)):
            f = rs.software_video_frame()
            f.pixels, f.bpp, f.stride = pixels, bpp, W * bpp
            f.timestamp, f.frame_number = 33.0 * i, i
            f.domain = rs.timestamp_domain.hardware_clock
            f.profile = profile.as_video_stream_profile()
            if sensor is depth_sensor:
                f.depth_units = depth_units
            keep.append(f)
            sensor.on_video_frame(f)
    for _ in range(6):   # the first sets may hold one stream only
        frames = sync.wait_for_frames(2000)
        if frames.get_depth_frame() and frames.get_color_frame():
            return frames, (dev, depth_sensor, color_sensor, keep)
    raise AssertionError('the software device never produced a depth + colour pair')


def test_injected_frames_become_aligned_rgb_and_depth_mm():
    depth = np.full((H, W), 900, np.uint16)
    depth[10:20, 30:40] = 450
    color = np.zeros((H, W, 3), np.uint8)
    color[..., 0] = 200
    color[5, 7] = (1, 2, 3)
    frames, keep = inject(depth, color)
    frame = frameset_to_frame(frames, rs.align(rs.stream.color), depth_scale_m=0.001)
    assert frame.rgb.shape == (H, W, 3) and tuple(frame.rgb[5, 7]) == (1, 2, 3)
    assert frame.depth_mm.dtype == np.uint16
    assert frame.depth_mm[15, 35] == 450 and frame.depth_mm[40, 5] == 900
    np.testing.assert_allclose(frame.K, [[50, 0, 32], [0, 50, 24], [0, 0, 1]])
    assert frame.stamp_ns > 0


def test_bgr_colour_is_converted_and_depth_units_applied():
    depth = np.full((H, W), 4000, np.uint16)   # 4000 units of 0.1 mm = 400 mm
    color = np.zeros((H, W, 3), np.uint8)
    color[..., 2] = 255                         # red in BGR order
    frames, keep = inject(depth, color, rs.format.bgr8, depth_units=0.0001)
    frame = frameset_to_frame(frames, rs.align(rs.stream.color), depth_scale_m=0.0001)
    assert tuple(frame.rgb[0, 0]) == (255, 0, 0)
    assert frame.depth_mm[24, 32] == 400


def test_realsense_and_rclpy_coexist_in_one_process(tmp_path):
    """pyrealsense2 builds that bundle their own Fast-DDS crash rclpy processes at exit."""
    import subprocess
    import sys

    script = tmp_path / 'both.py'
    script.write_text(
        'import pyrealsense2 as rs\n'
        'device = rs.software_device()\n'
        "device.add_sensor('Depth')\n"
        'import rclpy\n'
        'rclpy.init()\n'
        "rclpy.create_node('coexist').destroy_node()\n"
        'rclpy.shutdown()\n'
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
