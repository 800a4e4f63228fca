"""sensor_msgs/Image <-> numpy without cv_bridge (PLATFORM.md: the PyPI cv-bridge is broken).

Supported encodings: rgb8, bgr8, mono8, 16UC1 (depth in mm), 32FC1 (depth in m). The row
step is checked against width * channels * bytes so a padded or truncated buffer is refused
instead of being decoded into a sheared image.
"""

import numpy as np

ENCODINGS = {
    'rgb8': (np.uint8, 3),
    'bgr8': (np.uint8, 3),
    'mono8': (np.uint8, 1),
    '16UC1': (np.uint16, 1),
    'mono16': (np.uint16, 1),
    '32FC1': (np.float32, 1),
}


def image_to_array(msg):
    """Return the pixels of a sensor_msgs/Image as a numpy array (H, W) or (H, W, C).

    Rows padded beyond ``width * channels`` (a larger ``step``) are cropped; a buffer whose
    size does not match ``height * step`` raises ValueError naming the encoding.
    """
    if msg.encoding not in ENCODINGS:
        raise ValueError(f'unsupported image encoding {msg.encoding!r}; '
                         f'use one of {sorted(ENCODINGS)}')
    dtype, channels = ENCODINGS[msg.encoding]
    dtype = np.dtype(dtype).newbyteorder('>' if msg.is_bigendian else '<')
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise ValueError(f'{msg.encoding} image step {msg.step} < width*channels*bytes '
                         f'{row_bytes}')
    data = bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray)) else msg.data
    if len(data) != msg.height * msg.step:
        raise ValueError(f'{msg.encoding} image has {len(data)} bytes, expected '
                         f'height*step = {msg.height * msg.step}')
    rows = np.frombuffer(data, dtype=np.uint8).reshape(msg.height, msg.step)[:, :row_bytes]
    arr = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width, channels)
    arr = arr.astype(dtype.newbyteorder('='), copy=False)
    return arr[:, :, 0] if channels == 1 else arr


def array_to_image(array, encoding, header=None):
    """Return a sensor_msgs/Image holding ``array`` with ``encoding`` (little endian)."""
    from sensor_msgs.msg import Image

    if encoding not in ENCODINGS:
        raise ValueError(f'unsupported image encoding {encoding!r}')
    dtype, channels = ENCODINGS[encoding]
    arr = np.ascontiguousarray(np.asarray(array).astype(dtype, copy=False))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise ValueError(f'{encoding} needs {channels} channel(s), got shape {array.shape}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.shape[1] * channels * arr.dtype.itemsize)
    msg.data = arr.tobytes()
    return msg


def depth_image_to_metres(msg):
    """Return an aligned depth image in metres (float, 0 = no measurement)."""
    depth = image_to_array(msg)
    if msg.encoding in ('16UC1', 'mono16'):
        return depth.astype(np.float32) / 1000.0
    if msg.encoding == '32FC1':
        out = depth.astype(np.float32)
        out[~np.isfinite(out)] = 0.0
        return out
    raise ValueError(f'{msg.encoding!r} is not a depth encoding (16UC1 mm or 32FC1 m)')


def metres_to_depth_mm(depth_m):
    """Convert metric depth to the realsense-ros 16UC1 millimetre image (0 = invalid)."""
    depth_m = np.asarray(depth_m, dtype=float)
    mm = np.where(np.isfinite(depth_m) & (depth_m > 0), np.round(depth_m * 1000.0), 0.0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


def camera_info_to_k(msg):
    """Return the 3x3 K of a sensor_msgs/CameraInfo (refuses an all-zero K)."""
    K = np.asarray(msg.k, dtype=float).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError('camera_info has no intrinsics (k[0] or k[4] <= 0)')
    return K


def make_camera_info(K, width, height, header=None, distortion=None):
    """Return a sensor_msgs/CameraInfo for a pinhole camera (plumb_bob, zero distortion)."""
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = 'plumb_bob'
    msg.d = [float(x) for x in (distortion if distortion is not None else [0.0] * 5)]
    K = np.asarray(K, dtype=float)
    msg.k = [float(x) for x in K.reshape(-1)]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:3, :3] = K
    msg.p = [float(x) for x in P.reshape(-1)]
    return msg
