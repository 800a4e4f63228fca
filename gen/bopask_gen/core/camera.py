"""Pinhole camera geometry: projection, back-projection and robust depth sampling.

Conventions: the camera optical frame of REP 103 (x right, y down, z forward), pixel
coordinates (u, v) with the centre of the top-left pixel at (0, 0), depth in metres along
the optical axis, 0 or non-finite meaning "no measurement".
"""

import functools

import numpy as np


def intrinsics_matrix(fx, fy, cx, cy):
    """Return the 3x3 camera matrix K."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def intrinsics_from_fovy(fovy_deg, width, height):
    """Return K of a camera with square pixels and a vertical field of view (MuJoCo's model)."""
    f = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2.0)
    return intrinsics_matrix(f, f, (width - 1) / 2.0, (height - 1) / 2.0)


def project_points(points_cam, K):
    """Project (N, 3) camera-frame points to (N, 2) pixels; points with z <= 0 give NaN."""
    pts = np.asarray(points_cam, dtype=float).reshape(-1, 3)
    K = np.asarray(K, dtype=float)
    x, y = pts[:, 0], pts[:, 1]
    z = np.where(pts[:, 2] > 0, pts[:, 2], np.nan)      # behind the camera: NaN pixels
    uv = np.empty((len(pts), 2))
    uv[:, 0] = K[0, 0] * x / z + K[0, 1] * y / z + K[0, 2]
    uv[:, 1] = K[1, 1] * y / z + K[1, 2]
    return uv


def _normalized_coords(u, v, K):
    """Normalised image coordinates (x, y) = (X/Z, Y/Z) of pixel coordinates (broadcast)."""
    y = (v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return x, y


def pixel_rays(uv, K):
    """Return the (N, 3) camera-frame rays (x/z, y/z, 1) of (N, 2) pixels: points at depth 1."""
    uv = np.asarray(uv, dtype=float).reshape(-1, 2)
    x, y = _normalized_coords(uv[:, 0], uv[:, 1], np.asarray(K, dtype=float))
    # Filled column by column (np.stack is Python-level glue around the copy).
    rays = np.empty((len(uv), 3))
    rays[:, 0], rays[:, 1], rays[:, 2] = x, y, 1.0
    return rays


def backproject_pixels(uv, depth, K):
    """Lift (N, 2) pixels with (N,) depths in metres to (N, 3) camera-frame points."""
    depth = np.asarray(depth, dtype=float).reshape(-1)
    return pixel_rays(uv, K) * depth[:, None]


def backproject_grid(depth, us, vs, K):
    """Lift a depth grid to (H, W, 3) camera-frame points.

    ``depth`` (H, W) holds the depths at the pixels of columns ``us`` (W,) and rows ``vs``
    (H,), e.g. a strided patch of a depth image: ``backproject_pixels`` without listing the
    pixels one by one.
    """
    depth = np.asarray(depth, dtype=float)
    x, y = _normalized_coords(np.asarray(us, dtype=float)[None, :],
                              np.asarray(vs, dtype=float)[:, None], np.asarray(K, dtype=float))
    points = np.empty(depth.shape + (3,))
    points[..., 0] = x * depth
    points[..., 1] = y * depth
    points[..., 2] = depth
    return points


def depth_to_points(depth_m, K, mask=None, stride=1):
    """Return the (N, 3) camera-frame points of the valid depth pixels and their (N, 2) pixels.

    ``mask`` restricts to a boolean image; ``stride`` subsamples rows and columns.
    """
    depth_m = np.asarray(depth_m)
    valid = np.isfinite(depth_m) & (depth_m > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if stride > 1:
        keep = np.zeros_like(valid)
        keep[::stride, ::stride] = True
        valid &= keep
    v, u = np.nonzero(valid)
    uv = np.stack([u, v], axis=1).astype(float)
    return backproject_pixels(uv, depth_m[v, u], K), uv


def pixels_inside(uv, width, height):
    """Return a boolean (N,) array: pixel centre inside the image (finite and in bounds)."""
    uv = np.asarray(uv, dtype=float).reshape(-1, 2)
    u, v = uv[:, 0], uv[:, 1]
    # NaN fails every comparison and +-inf the bounds: no separate finiteness test.
    return (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)


@functools.lru_cache(maxsize=8)
def _window_offsets(window):
    """(window * window, 2) pixel offsets (du, dv) of a square window around its centre."""
    half = max(int(window) // 2, 0)
    dv, du = np.mgrid[-half:half + 1, -half:half + 1]
    return np.stack([du.ravel(), dv.ravel()], axis=1)


def sample_depth(depth_m, uv, window=5):
    """Return the median valid depth in a ``window`` x ``window`` patch around each pixel.

    Real depth has holes and flying pixels at edges, so one pixel is not trusted. A pixel
    whose patch holds no valid measurement (or that lies outside the image) gives NaN.
    """
    # No dtype conversion of the whole image (a copy per call): only patches are read.
    depth_m = np.asarray(depth_m)
    h, w = depth_m.shape
    uv = np.asarray(uv, dtype=float).reshape(-1, 2)
    if len(uv) == 0:
        return np.zeros(0)
    offsets = _window_offsets(window)
    # A pixel outside the image is moved to where its whole window is off the image too.
    far = -float(len(offsets))
    centre = np.where(pixels_inside(uv, w, h)[:, None], uv, far).round().astype(int)
    win = centre[:, None] + offsets                                   # (N, window², 2)
    clipped = np.minimum(np.maximum(win, 0), (w - 1, h - 1))
    patch = depth_m[clipped[..., 1], clipped[..., 0]].astype(float)
    # Valid: in the image (not a clipped copy), positive and finite (NaN fails both).
    same = win == clipped
    good = same[..., 0] & same[..., 1] & (patch > 0) & (patch < np.inf)
    # Median of the valid values per patch: sorted with the invalid ones last (as NaN); a
    # patch with none gives NaN (index -1: the last, NaN).
    vals = np.where(good, patch, np.nan)
    vals.sort(axis=1)
    n = np.add.reduce(good, axis=1)     # np.count_nonzero runs Python glue first
    rows = np.arange(len(uv))
    return (vals[rows, (n - 1) // 2] + vals[rows, n // 2]) / 2.0


def mesh_silhouette(vertices_cam, faces, K, width, height):
    """Rasterise the silhouette of a camera-frame triangle mesh into a bool HxW mask.

    Faces with a vertex behind the camera are dropped. No z-buffer: this is the full
    (amodal) mask of the object, as BOP's ``mask/`` folder stores it.
    """
    import cv2

    uv = project_points(vertices_cam, K)
    tris = uv[np.asarray(faces)]
    keep = np.all(np.isfinite(tris), axis=(1, 2))
    # Fixed point with 4 fractional bits keeps sub-pixel accuracy in cv2.fillPoly.
    shift = 4
    pts = np.round(tris[keep] * (1 << shift)).astype(np.int32)
    mask = np.zeros((height, width), np.uint8)
    # One call per triangle: cv2.fillPoly over many overlapping polygons leaves holes.
    for tri in pts:
        cv2.fillConvexPoly(mask, tri, 1, lineType=cv2.LINE_8, shift=shift)
    return mask.astype(bool)
