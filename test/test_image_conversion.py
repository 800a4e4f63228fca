"""sensor_msgs/Image <-> numpy without cv_bridge: encodings, padded rows, refusals."""

import numpy as np
import pytest

from bopask_ros.image_conversion import (
    array_to_image,
    camera_info_to_k,
    depth_image_to_metres,
    image_to_array,
    make_camera_info,
    metres_to_depth_mm,
)


@pytest.mark.parametrize('encoding,shape,dtype', [
    ('rgb8', (4, 5, 3), np.uint8), ('mono8', (4, 5), np.uint8),
    ('16UC1', (4, 5), np.uint16), ('32FC1', (4, 5), np.float32)])
def test_round_trip(encoding, shape, dtype):
    rng = np.random.default_rng(0)
    arr = (rng.random(shape) * 200).astype(dtype)
    msg = array_to_image(arr, encoding)
    assert msg.step == shape[1] * (shape[2] if len(shape) == 3 else 1) * arr.itemsize
    np.testing.assert_array_equal(image_to_array(msg), arr)


def test_padded_rows_are_cropped_not_sheared():
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4)
    msg = array_to_image(arr, '16UC1')
    padded = b''.join(arr[r].tobytes() + b'\xff\xff' for r in range(3))
    msg.step, msg.data = 10, padded
    np.testing.assert_array_equal(image_to_array(msg), arr)


def test_big_endian_depth():
    arr = np.array([[1000, 2500]], dtype=np.uint16)
    msg = array_to_image(arr, '16UC1')
    msg.is_bigendian = 1
    msg.data = arr.astype('>u2').tobytes()
    np.testing.assert_array_equal(image_to_array(msg), arr)


def test_refusals_name_the_problem():
    msg = array_to_image(np.zeros((3, 4), np.uint16), '16UC1')
    msg.step = 4   # shorter than a row
    with pytest.raises(ValueError, match='step'):
        image_to_array(msg)
    msg = array_to_image(np.zeros((3, 4), np.uint16), '16UC1')
    msg.data = bytes(msg.data)[:-2]
    with pytest.raises(ValueError, match='bytes'):
        image_to_array(msg)
    msg.encoding = 'yuv422'
    with pytest.raises(ValueError, match='yuv422'):
        image_to_array(msg)


def test_depth_units_and_camera_info():
    depth = np.array([[0.0, 0.5123], [np.nan, 1.2]])
    mm = metres_to_depth_mm(depth)
    assert mm.dtype == np.uint16 and mm.tolist() == [[0, 512], [0, 1200]]
    back = depth_image_to_metres(array_to_image(mm, '16UC1'))
    np.testing.assert_allclose(back, [[0.0, 0.512], [0.0, 1.2]], atol=1e-6)
    K = np.array([[600.0, 0, 320], [0, 601.0, 240], [0, 0, 1]])
    info = make_camera_info(K, 640, 480)
    np.testing.assert_allclose(camera_info_to_k(info), K)
    info.k = [0.0] * 9
    with pytest.raises(ValueError, match='intrinsics'):
        camera_info_to_k(info)
