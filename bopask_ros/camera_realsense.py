"""RealSense backend of the camera node: colour + depth aligned to colour with pyrealsense2.

``RealSenseSource`` opens a device (640x480@30 rgb8 + z16 by default), aligns depth to the
colour stream with ``rs.align`` and returns ``CameraFrame``s: RGB uint8, aligned depth in
millimetres (uint16, 0 = no data), the colour intrinsics from the device, and the frame's
timestamp. ``frameset_to_frame`` is the conversion used for both a live pipeline and a
``rs.software_device`` (how the tests inject frames without hardware).
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class CameraFrame:
    """One aligned RGB-D frame."""

    rgb: np.ndarray          # uint8 HxWx3
    depth_mm: np.ndarray     # uint16 HxW, 0 = invalid
    K: np.ndarray            # 3x3 colour intrinsics
    distortion: list         # 5 coefficients (colour stream)
    stamp_ns: int            # device timestamp (ms in librealsense) converted to ns


def intrinsics_to_k(intr):
    """rs.intrinsics -> 3x3 K."""
    return np.array([[intr.fx, 0.0, intr.ppx], [0.0, intr.fy, intr.ppy], [0.0, 0.0, 1.0]])


def frameset_to_frame(frameset, align, depth_scale_m):
    """Align a composite frame to colour and return a CameraFrame (or raise ValueError).

    ``depth_scale_m``: metres per depth unit of the device (0.001 on D4xx).
    """
    import pyrealsense2 as rs

    aligned = align.process(frameset)
    color = aligned.get_color_frame()
    depth = aligned.get_depth_frame()
    if not color or not depth:
        raise ValueError('RealSense frameset lacks a colour or a depth frame')
    fmt = color.get_profile().format()
    rgb = np.asanyarray(color.get_data()).copy()
    if fmt == rs.format.bgr8:
        rgb = rgb[:, :, ::-1].copy()
    elif fmt != rs.format.rgb8:
        raise ValueError(f'unsupported RealSense colour format {fmt}; use rgb8 or bgr8')
    raw = np.asanyarray(depth.get_data()).astype(np.float64)
    depth_mm = np.clip(np.round(raw * depth_scale_m * 1000.0), 0, 65535).astype(np.uint16)
    intr = color.get_profile().as_video_stream_profile().get_intrinsics()
    return CameraFrame(rgb=rgb, depth_mm=depth_mm, K=intrinsics_to_k(intr),
                       distortion=list(intr.coeffs), stamp_ns=int(color.get_timestamp() * 1e6))


class RealSenseSource:
    """A live RealSense pipeline (colour + aligned depth)."""

    def __init__(self, width=640, height=480, fps=30, serial=''):
        import pyrealsense2 as rs
        self._rs = rs
        ctx = rs.context()
        if len(ctx.query_devices()) == 0:
            raise RuntimeError('no RealSense device connected (pyrealsense2 found 0 devices)')
        config = rs.config()
        if serial:
            config.enable_device(serial)
        config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
        config.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
        self.pipeline = rs.pipeline(ctx)
        profile = self.pipeline.start(config)
        self.depth_scale = profile.get_device().first_depth_sensor().get_depth_scale()
        self.align = rs.align(rs.stream.color)

    def read(self, timeout_ms=1000):
        """Block for the next frame and return a CameraFrame."""
        frames = self.pipeline.wait_for_frames(timeout_ms)
        return frameset_to_frame(frames, self.align, self.depth_scale)

    def close(self):
        """Stop the pipeline."""
        self.pipeline.stop()
