import numpy as np
import pytest

from bopask_gen.core.camera import (
    backproject_grid,
    backproject_pixels,
    depth_to_points,
    intrinsics_from_fovy,
    pixels_inside,
    project_points,
    sample_depth,
)

K = np.array([[600.0, 0.0, 320.0], [0.0, 610.0, 240.0], [0.0, 0.0, 1.0]])


def test_project_then_backproject_round_trip():
    rng = np.random.default_rng(0)
    pts = rng.uniform([-0.3, -0.2, 0.4], [0.3, 0.2, 1.5], size=(50, 3))
    uv = project_points(pts, K)
    back = backproject_pixels(uv, pts[:, 2], K)
    np.testing.assert_allclose(back, pts, atol=1e-12)


@pytest.mark.parametrize('skew', [0.0, 4.0])
def test_backproject_grid_is_backproject_pixels_on_a_pixel_grid(skew):
    Ks = K.copy()
    Ks[0, 1] = skew
    us, vs = np.arange(100, 131, 3), np.arange(50, 71, 5)
    depth = np.random.default_rng(1).uniform(0.4, 1.2, size=(len(vs), len(us)))
    vv, uu = np.meshgrid(vs, us, indexing='ij')
    listed = backproject_pixels(np.stack([uu.ravel(), vv.ravel()], axis=1), depth.ravel(), Ks)
    grid = backproject_grid(depth.astype(np.float32), us, vs, Ks)
    assert grid.shape == (len(vs), len(us), 3)
    np.testing.assert_allclose(grid.reshape(-1, 3), listed, rtol=1e-6)
    np.testing.assert_allclose(project_points(grid.reshape(-1, 3), Ks),
                               np.stack([uu.ravel(), vv.ravel()], axis=1), atol=1e-9)


def test_projection_of_known_point():
    uv = project_points([[0.1, -0.05, 1.0]], K)
    np.testing.assert_allclose(uv, [[380.0, 209.5]])


def test_points_behind_camera_project_to_nan():
    uv = project_points([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]], K)
    assert np.all(np.isnan(uv[0])) and np.allclose(uv[1], [320, 240])


def test_intrinsics_from_fovy_matches_mujoco_convention():
    K2 = intrinsics_from_fovy(58.0, 640, 480)
    assert K2[0, 0] == pytest.approx(240.0 / np.tan(np.deg2rad(29.0)))
    assert (K2[0, 2], K2[1, 2]) == (319.5, 239.5)


def test_sample_depth_uses_median_and_rejects_empty_windows():
    depth = np.zeros((20, 20), np.float32)
    depth[8:13, 8:13] = 1.0
    depth[10, 10] = 5.0  # a flying pixel must not win
    depth[2, 2] = np.nan
    out = sample_depth(depth, [[10, 10], [2, 2], [50, 5], [12.4, 10], [15.4, 10]], window=5)
    assert out[0] == pytest.approx(1.0)
    assert np.isnan(out[1]) and np.isnan(out[2])
    assert out[3] == pytest.approx(1.0) and np.isnan(out[4])


def test_depth_to_points_skips_invalid_and_respects_mask():
    depth = np.full((4, 5), 2.0, np.float32)
    depth[0, 0] = 0.0
    mask = np.zeros((4, 5), bool)
    mask[:2] = True
    pts, uv = depth_to_points(depth, K, mask=mask)
    assert len(pts) == 9 and np.all(pts[:, 2] == 2.0)
    np.testing.assert_allclose(project_points(pts, K), uv, atol=1e-9)


def test_pixels_inside_bounds():
    inside = pixels_inside([[0, 0], [639.4, 479.4], [640, 10], [np.nan, 1], [-0.6, 3]], 640, 480)
    assert inside.tolist() == [True, True, False, False, False]


def test_sample_depth_is_the_window_median_of_valid_pixels():
    from bopask_gen.core.camera import sample_depth
    depth = np.zeros((6, 8))
    depth[1:4, 1:4] = [[1.0, 2.0, 3.0], [4.0, 0.0, np.nan], [5.0, 6.0, 7.0]]
    got = sample_depth(depth, [[2, 2], [0, 0], [7, 5], [-3, 2], [2.4, 1.6]], window=3)
    np.testing.assert_allclose(got[:2], [4.0, 1.0])    # zeros and NaN are not depths
    assert np.isnan(got[2]) and np.isnan(got[3])       # no valid pixel / outside the image
    assert got[4] == 4.0                                # rounded to the nearest pixel (2, 2)
    assert sample_depth(depth, np.zeros((0, 2))).shape == (0,)


def _window_median_loop(depth, u, v, window):
    """sample_depth of one pixel, written out: the median of the valid in-image pixels."""
    h, w = depth.shape
    if not (-0.5 <= u < w - 0.5 and -0.5 <= v < h - 0.5):
        return np.nan
    half = window // 2
    cu, cv = int(np.round(u)), int(np.round(v))
    vals = [depth[r, c] for r in range(cv - half, cv + half + 1)
            for c in range(cu - half, cu + half + 1)
            if 0 <= r < h and 0 <= c < w and np.isfinite(depth[r, c]) and depth[r, c] > 0]
    return float(np.median(vals)) if vals else np.nan


@pytest.mark.parametrize('window', [1, 3, 5, 7])
def test_sample_depth_matches_a_pixel_by_pixel_loop(window):
    rng = np.random.default_rng(window)
    for dtype in (np.float32, np.float64):
        depth = rng.uniform(0.3, 2.0, (23, 31)).astype(dtype)
        holes = rng.random(depth.shape)
        depth[holes < 0.15] = 0.0
        depth[(holes > 0.15) & (holes < 0.25)] = np.nan
        depth[(holes > 0.25) & (holes < 0.3)] = np.inf
        depth[(holes > 0.3) & (holes < 0.33)] = -1.0
        uv = rng.uniform(-4.0, 35.0, (60, 2))
        uv[:5] = [[0, 0], [30, 22], [-0.5, 3], [30.49, 3], [2.5, 4.5]]   # edges, ties
        uv[5] = [np.nan, 3.0]
        want = [_window_median_loop(depth.astype(float), u, v, window) for u, v in uv]
        np.testing.assert_allclose(sample_depth(depth, uv, window=window), want, rtol=1e-12)
