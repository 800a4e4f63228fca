"""Per-image scene geometry: posed object meshes, the support plane and the world frame.

The world frame is the table frame of BOP-ASK: z up = normal of the support plane found by
RANSAC (open3d ``segment_plane``) on the depth point cloud around the objects, origin on the
plane below the objects' mean centre, x = camera x projected onto the plane (world +x is
"right" in the image) and y = z cross x (away from the camera = "behind").

RANSAC runs on a random subset of the depth points within reach of the objects (the
objects' own boxes removed), on one open3d thread (reproducible for a seed), and the plane
is refined by least squares on its inliers. The fitted plane is checked against the
ground-truth objects: no object may sink into it and at least one must rest on it. An
inconsistent plane (a wall, a box top, a shelf) is refitted on the remaining points; if no
consistent plane is found a plane through the lowest GT object points is used (normal from
the dataset's world frame when present, else the camera's up direction) and a warning is
issued. ``SceneGeometry.plane_source`` says which.

Meshes: the BOP PLY models store every face twice; they are de-duplicated (which makes the
YCB-V models watertight) and decimated with open3d quadric decimation for collision checks,
once per model per process.
"""

from dataclasses import dataclass, field
import functools
import warnings

import numpy as np
import open3d as o3d
import trimesh

from bopask_gen.core.bop import BopDataset, Frame, ObjectInfo
from bopask_gen.core.camera import depth_to_points
from bopask_gen.core.transforms import invert_transform, transform_points

# Target face count of the decimated collision meshes.
COLLISION_FACES = 1000
# RANSAC inlier threshold of the support plane, metres (real depth noise is a few mm).
PLANE_INLIER_DISTANCE = 0.008
# Depth points used for the plane fit (a random subset; the fit is ~ms).
PLANE_MAX_POINTS = 6000
# An object 'rests on' the plane when its lowest point is within this distance, metres.
BOTTOM_TOLERANCE = 0.03
# No object may reach more than this below the plane, metres.
SINK_TOLERANCE = 0.02
# Extra RANSAC fits on the remaining points when a plane disagrees with the GT objects.
PLANE_REFITS = 3


@dataclass
class SceneObject:
    """One annotated object instance whose model is available."""

    gt_index: int
    obj_id: int
    T_m2c: np.ndarray
    info: ObjectInfo
    mesh_cam: trimesh.Trimesh
    centre_cam: np.ndarray
    centre_world: np.ndarray
    visib_fract: float | None


@dataclass
class SceneGeometry:
    """Geometry of one image: camera, depth, posed objects, support plane and world frame."""

    frame: Frame
    K: np.ndarray
    width: int
    height: int
    depth_m: np.ndarray
    objects: list
    T_c2w: np.ndarray
    plane_cam: np.ndarray
    plane_source: str = 'ransac'
    dataset: BopDataset | None = field(default=None, repr=False)
    cache: dict = field(default_factory=dict, repr=False)

    def object_by_gt(self, gt_index):
        """Return the SceneObject of a GT index; KeyError names the missing index."""
        for obj in self.objects:
            if obj.gt_index == gt_index:
                return obj
        raise KeyError(f'no object with gt_index {gt_index} in scene {self.frame.scene_id} '
                       f'image {self.frame.im_id} (available: '
                       f'{[o.gt_index for o in self.objects]})')

    @property
    def T_w2c(self):
        """World-to-camera transform (inverse of T_c2w)."""
        return invert_transform(self.T_c2w)

    @property
    def up_cam(self):
        """World up (the plane normal) in the camera frame, (3,)."""
        return self.plane_cam[:3].copy()

    def to_world(self, points_cam):
        """Transform (N, 3) camera-frame points to the world frame."""
        return transform_points(self.T_c2w, points_cam)

    def to_cam(self, points_world):
        """Transform (N, 3) world-frame points to the camera frame."""
        return transform_points(self.T_w2c, points_world)

    def height_above_plane(self, points_cam):
        """Signed distance of (N, 3) camera-frame points above the support plane, metres."""
        pts = np.asarray(points_cam, dtype=float).reshape(-1, 3)
        return pts @ self.plane_cam[:3] + self.plane_cam[3]


def clean_model_mesh(dataset, obj_id):
    """Return the model (model frame, metres) with duplicate faces removed, outward normals."""
    return _clean_mesh(str(dataset.model_path(obj_id)), dataset)


def collision_model_mesh(dataset, obj_id, faces=COLLISION_FACES):
    """Return the decimated model (model frame, metres) used for collision checks."""
    return _decimated_mesh(str(dataset.model_path(obj_id)), faces, dataset)


@functools.lru_cache(maxsize=64)
def _clean_mesh(path, dataset):
    obj_id = int(path.rsplit('obj_', 1)[1].split('.')[0])
    raw = dataset.model_mesh(obj_id)
    mesh = trimesh.Trimesh(raw.vertices, raw.faces, process=True)
    mesh.update_faces(mesh.unique_faces() & mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    if mesh.is_watertight and mesh.volume < 0:
        mesh.invert()
    return mesh


@functools.lru_cache(maxsize=64)
def _decimated_mesh(path, faces, dataset):
    clean = _clean_mesh(path, dataset)
    if len(clean.faces) <= faces:
        return clean
    o3m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(clean.vertices),
                                    o3d.utility.Vector3iVector(clean.faces))
    dec = o3m.simplify_quadric_decimation(target_number_of_triangles=int(faces))
    mesh = trimesh.Trimesh(np.asarray(dec.vertices), np.asarray(dec.triangles), process=True)
    if len(mesh.faces) < 4:  # decimation can fail on broken models: keep the full mesh
        return clean
    return mesh


def build_scene_geometry(dataset, frame, rng=None):
    """Build the SceneGeometry of one frame (objects without a model are skipped, warned).

    Raises ValueError when no object of the frame has a model (nothing to annotate).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    depth = frame.depth_m()
    height, width = depth.shape
    posed = []
    for gt in frame.gts:
        if not dataset.has_model(gt.obj_id):
            warnings.warn(f'{frame.scene_dir}: image {frame.im_id} gt {gt.gt_index}: no model '
                          f'or models_info entry for obj_id {gt.obj_id}; object skipped',
                          stacklevel=2)
            continue
        info = dataset.models_info[gt.obj_id]
        mesh = collision_model_mesh(dataset, gt.obj_id).copy()
        mesh.apply_transform(gt.T_m2c)
        centre = transform_points(gt.T_m2c, (info.bbox_min + info.bbox_size / 2.0)[None])[0]
        posed.append((gt, info, mesh, centre))
    if not posed:
        raise ValueError(f'{frame.scene_dir}: image {frame.im_id} has no object with a model '
                         f'in {dataset.models_dir}')
    plane, source = fit_support_plane(depth, frame.K, [p[2] for p in posed],
                                      [(p[1], p[0].T_m2c) for p in posed], rng,
                                      dataset_T_w2c=frame.T_w2c)
    if source != 'ransac':
        warnings.warn(f'{frame.scene_dir}: image {frame.im_id}: support plane from {source}',
                      stacklevel=2)
    centres = np.array([p[3] for p in posed])
    T_c2w = world_frame_from_plane(plane, centres)
    objects = [SceneObject(
        gt_index=gt.gt_index, obj_id=gt.obj_id, T_m2c=gt.T_m2c, info=info, mesh_cam=mesh,
        centre_cam=centre, centre_world=transform_points(T_c2w, centre[None])[0],
        visib_fract=gt.visib_fract) for gt, info, mesh, centre in posed]
    return SceneGeometry(frame=frame, K=np.asarray(frame.K, dtype=float), width=width,
                         height=height, depth_m=depth, objects=objects, T_c2w=T_c2w,
                         plane_cam=plane, plane_source=source, dataset=dataset)


def orient_plane_up(plane):
    """Normalise a plane (a, b, c, d) and orient its normal toward the camera origin."""
    plane = np.asarray(plane, dtype=float)
    plane = plane / np.linalg.norm(plane[:3])
    return -plane if plane[3] < 0 else plane


def _segment_plane_single_thread(cloud):
    # open3d's RANSAC threads share one random sampler, so with several threads the model
    # depends on scheduling; one thread makes it reproducible for a seed (~3 ms here).
    previous = o3d.utility.get_max_threads()
    o3d.utility.set_max_threads(1)
    try:
        return cloud.segment_plane(PLANE_INLIER_DISTANCE, 3, 200)
    finally:
        o3d.utility.set_max_threads(previous)


def refine_plane(plane, points, iterations=8):
    """Least-squares refit of a RANSAC plane on its inliers until the inlier set is stable."""
    inliers = None
    for _ in range(iterations):
        mask = np.abs(points @ plane[:3] + plane[3]) < PLANE_INLIER_DISTANCE
        if mask.sum() < 3 or (inliers is not None and np.array_equal(mask, inliers)):
            break
        inliers = mask
        pts = points[mask]
        centroid = pts.mean(axis=0)
        normal = np.linalg.svd(pts - centroid, full_matrices=False)[2][2]
        plane = orient_plane_up(np.append(normal, -normal @ centroid))
    return plane


def plane_agrees_with_objects(plane, meshes_cam):
    """True when no object sinks into the plane and at least one rests on it."""
    lows = np.array([np.min(m.vertices @ plane[:3] + plane[3]) for m in meshes_cam])
    return bool(np.all(lows > -SINK_TOLERANCE) and np.any(np.abs(lows) < BOTTOM_TOLERANCE))


def _points_outside_objects(points, boxes, margin=0.01):
    """Drop depth points inside any object's (enlarged) model bounding box."""
    keep = np.ones(len(points), dtype=bool)
    for info, T_m2c in boxes:
        local = transform_points(invert_transform(T_m2c), points)
        lo = info.bbox_min - margin
        hi = info.bbox_min + info.bbox_size + margin
        keep &= ~np.all((local > lo) & (local < hi), axis=1)
    return keep


def fit_support_plane(depth_m, K, meshes_cam, boxes, rng, dataset_T_w2c=None):
    """Fit the support plane; return ``(plane (4,), source)`` with the normal pointing up.

    The cloud is seeded near the objects: depth points within a radius of the objects
    (excluding the objects themselves), randomly subsampled. ``source`` is ``'ransac'``,
    ``'ransac-refit'`` or ``'fallback-...'`` (see the module docstring).
    """
    points, _ = depth_to_points(depth_m, K, stride=4)
    centres = np.array([m.bounds.mean(axis=0) for m in meshes_cam])
    reach = max(float(np.max([np.linalg.norm(np.ptp(m.bounds, axis=0)) for m in meshes_cam])),
                0.1) + 0.15
    near = np.min(np.linalg.norm(points[:, None, :] - centres[None], axis=2), axis=1) < reach
    points = points[near]
    points = points[_points_outside_objects(points, boxes)]
    if len(points) > PLANE_MAX_POINTS:
        points = points[rng.choice(len(points), PLANE_MAX_POINTS, replace=False)]
    remaining = points
    o3d.utility.random.seed(int(rng.integers(1, 2**31 - 1)))
    for attempt in range(PLANE_REFITS + 1):
        if len(remaining) < 50:
            break
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(remaining))
        model, inliers = _segment_plane_single_thread(cloud)
        plane = refine_plane(orient_plane_up(model), remaining)
        if plane_agrees_with_objects(plane, meshes_cam):
            return plane, 'ransac' if attempt == 0 else 'ransac-refit'
        mask = np.ones(len(remaining), dtype=bool)
        mask[np.asarray(inliers, dtype=int)] = False
        remaining = remaining[mask]
    return _fallback_plane(meshes_cam, dataset_T_w2c)


def _fallback_plane(meshes_cam, dataset_T_w2c):
    if dataset_T_w2c is not None:
        normal, source = np.asarray(dataset_T_w2c)[:3, 2], 'fallback-dataset-world-z'
        if normal[1] > 0:  # world z must point up in the image (camera -y)
            normal = -normal
    else:
        normal, source = np.array([0.0, -1.0, 0.0]), 'fallback-camera-up'
    normal = normal / np.linalg.norm(normal)
    low = min(float(np.min(m.vertices @ normal)) for m in meshes_cam)
    return orient_plane_up(np.append(normal, -low)), source


def world_frame_from_plane(plane, centres_cam):
    """Return T_c2w of the world frame on ``plane`` below the mean of ``centres_cam``."""
    z = np.asarray(plane[:3], dtype=float)
    x = np.array([1.0, 0.0, 0.0]) - z[0] * z
    if np.linalg.norm(x) < 1e-6:  # camera x along the normal: looking sideways at a wall
        x = np.array([0.0, 0.0, 1.0]) - z[2] * z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c = np.mean(np.asarray(centres_cam, dtype=float).reshape(-1, 3), axis=0)
    origin = c - (c @ z + plane[3]) * z
    T_w2c = np.eye(4)
    T_w2c[:3, 0], T_w2c[:3, 1], T_w2c[:3, 2], T_w2c[:3, 3] = x, y, z, origin
    return invert_transform(T_w2c)


def mask_visib(scene, obj):
    """Return the visible mask of an object (bool HxW) from the BOP file, cached per scene."""
    key = ('mask_visib', obj.gt_index)
    if key not in scene.cache:
        scene.cache[key] = scene.frame.mask_visib(obj.gt_index)
    return scene.cache[key]
