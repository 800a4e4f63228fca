"""Writer for datasets in the BOP format, the counterpart of :mod:`bopask_gen.core.bop`.

Inputs are in metres (poses, meshes, depth) like everything the reader returns; files are
written in BOP's millimetres. Layout written::

    DATASET/camera.json
    DATASET/models/obj_XXXXXX.ply + models_info.json     (mm, origin at the bbox centre)
    DATASET/SPLIT/{scene:06d}/scene_camera.json           cam_K, depth_scale, cam_R/t_w2c
    DATASET/SPLIT/{scene:06d}/scene_gt.json               obj_id, cam_R_m2c, cam_t_m2c
    DATASET/SPLIT/{scene:06d}/scene_gt_info.json          bbox_*, px_count_*, visib_fract
    DATASET/SPLIT/{scene:06d}/{rgb,depth,mask,mask_visib}/*.png

JSON files and images are written to a temporary name and renamed, so a crash never leaves
a half-written file under the final name.
"""

from pathlib import Path
import shutil

import cv2
import numpy as np
from scipy.spatial.distance import pdist

from bopask_gen.core.atomic_files import atomic_path, write_json_atomic
from bopask_gen.core.transforms import invert_transform

M_TO_MM = 1000.0
DEFAULT_DEPTH_SCALE = 0.1
'''depth_mm = raw * depth_scale; 0.1 mm steps cover 0..6.5 m in uint16.'''


def atomic_write_png(path, image):
    """Write an image as PNG via a temporary file and a rename (RGB input is HxWx3)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)  # cv2 writes BGR
    with atomic_path(path, '.png') as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise OSError(f'could not write image {path}')


def model_info(mesh):
    """models_info.json entry (mm) of a mesh in metres: diameter, min_*, size_*."""
    verts = np.asarray(mesh.vertices, dtype=float) * M_TO_MM
    # The diameter is attained between hull vertices; far fewer pairs to compare.
    try:
        hull = np.asarray(mesh.convex_hull.vertices, dtype=float) * M_TO_MM
    except Exception:  # degenerate (flat) meshes have no 3D hull
        hull = verts
    diameter = float(pdist(hull).max()) if len(hull) > 1 else 0.0
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    info = {'diameter': diameter}
    for i, a in enumerate('xyz'):
        info[f'min_{a}'] = float(lo[i])
    for i, a in enumerate('xyz'):
        info[f'size_{a}'] = float(hi[i] - lo[i])
    return info


def write_models(root, meshes, symmetries=None):
    """Write ``models/obj_XXXXXX.ply`` (mm) and ``models_info.json`` for {obj_id: mesh}.

    Meshes are given in metres; each is re-centred at its bbox centre first (the BOP model
    convention), and the returned dict gives the shift (metres) that was applied per id.
    ``symmetries`` optionally maps obj_id -> extra models_info keys (e.g.
    ``symmetries_continuous``).
    """
    models_dir = Path(root) / 'models'
    models_dir.mkdir(parents=True, exist_ok=True)
    infos, shifts = {}, {}
    for obj_id, mesh in sorted(meshes.items()):
        mesh = mesh.copy()
        shift = -mesh.bounds.mean(axis=0)
        mesh.apply_translation(shift)
        shifts[int(obj_id)] = shift
        mesh.apply_scale(M_TO_MM)
        path = models_dir / f'obj_{int(obj_id):06d}.ply'
        with atomic_path(path, '.ply') as tmp:
            mesh.export(tmp, file_type='ply', encoding='binary')
        info = model_info(mesh.copy().apply_scale(1.0 / M_TO_MM))
        info.update((symmetries or {}).get(int(obj_id), {}))
        infos[str(int(obj_id))] = info
    write_json_atomic(models_dir / 'models_info.json', infos)
    return shifts


def write_camera_json(root, K, width, height, depth_scale=DEFAULT_DEPTH_SCALE):
    """Write the dataset-level ``camera.json`` (fx, fy, cx, cy, width, height, depth_scale)."""
    K = np.asarray(K, dtype=float)
    write_json_atomic(Path(root) / 'camera.json', {
        'cx': float(K[0, 2]), 'cy': float(K[1, 2]), 'fx': float(K[0, 0]),
        'fy': float(K[1, 1]), 'width': int(width), 'height': int(height),
        'depth_scale': float(depth_scale),
    })


def mask_bbox(mask):
    """BOP bbox [x, y, w, h] of a boolean mask; [-1, -1, -1, -1] when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [-1, -1, -1, -1]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
            int(ys.max() - ys.min() + 1)]


def gt_info_entry(mask, mask_visib, depth_m):
    """scene_gt_info.json entry of one instance from its full and visible masks."""
    mask = np.asarray(mask, dtype=bool)
    mask_visib = np.asarray(mask_visib, dtype=bool) & mask
    valid = np.asarray(depth_m) > 0
    px_all = int(mask.sum())
    px_visib = int(mask_visib.sum())
    return {
        'bbox_obj': mask_bbox(mask),
        'bbox_visib': mask_bbox(mask_visib),
        'px_count_all': px_all,
        'px_count_valid': int((mask & valid).sum()),
        'px_count_visib': px_visib,
        'visib_fract': float(px_visib / px_all) if px_all else 0.0,
    }


def depth_to_raw(depth_m, depth_scale=DEFAULT_DEPTH_SCALE):
    """Metric depth (metres, 0 = none) -> BOP uint16 raw values (depth_mm / depth_scale)."""
    depth_m = np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0, posinf=0.0)
    raw = np.round(depth_m * M_TO_MM / depth_scale)
    if raw.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError(f'depth up to {depth_m.max():.2f} m does not fit uint16 with '
                         f'depth_scale {depth_scale}; use a larger depth_scale')
    return np.clip(raw, 0, None).astype(np.uint16)


class BopSceneWriter:
    """Accumulates the frames of one scene; :meth:`close` writes its three JSON files."""

    def __init__(self, root, split, scene_id, depth_scale=DEFAULT_DEPTH_SCALE):
        """Create ``root/split/{scene_id:06d}``; an existing scene's images are replaced."""
        self.dir = Path(root) / split / f'{int(scene_id):06d}'
        for sub in ('rgb', 'depth', 'mask', 'mask_visib'):
            # Stale images of an earlier, longer run would otherwise outlive its JSON.
            shutil.rmtree(self.dir / sub, ignore_errors=True)
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.depth_scale = float(depth_scale)
        self.max_depth_m = np.iinfo(np.uint16).max * self.depth_scale / M_TO_MM
        self.scene_camera, self.scene_gt, self.scene_gt_info = {}, {}, {}

    def add_frame(self, im_id, rgb, depth_m, K, T_world_camera, instances):
        """Write one image and record its annotations.

        ``rgb`` uint8 HxWx3 (RGB), ``depth_m`` float HxW metres (0 = none), ``K`` 3x3,
        ``T_world_camera`` 4x4 camera optical frame in the world (or None), and
        ``instances`` a list of dicts with ``obj_id``, ``T_m2c`` (4x4, metres), ``mask``
        (full silhouette) and ``mask_visib`` (bool HxW).
        """
        im_id = int(im_id)
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f'rgb must be uint8 HxWx3, got {rgb.dtype} {rgb.shape}')
        if np.asarray(depth_m).shape != rgb.shape[:2]:
            raise ValueError(f'depth shape {np.asarray(depth_m).shape} != rgb {rgb.shape[:2]}')
        name = f'{im_id:06d}.png'
        atomic_write_png(self.dir / 'rgb' / name, rgb)
        atomic_write_png(self.dir / 'depth' / name, depth_to_raw(depth_m, self.depth_scale))
        cam = {'cam_K': np.asarray(K, dtype=float).reshape(9).tolist(),
               'depth_scale': self.depth_scale}
        if T_world_camera is not None:
            T_w2c = invert_transform(T_world_camera)
            cam['cam_R_w2c'] = T_w2c[:3, :3].reshape(9).tolist()
            cam['cam_t_w2c'] = (T_w2c[:3, 3] * M_TO_MM).tolist()
        gts, infos = [], []
        for gt_index, inst in enumerate(instances):
            T = np.asarray(inst['T_m2c'], dtype=float)
            gts.append({'cam_R_m2c': T[:3, :3].reshape(9).tolist(),
                        'cam_t_m2c': (T[:3, 3] * M_TO_MM).tolist(),
                        'obj_id': int(inst['obj_id'])})
            mask = np.asarray(inst['mask'], dtype=bool)
            mask_visib = np.asarray(inst['mask_visib'], dtype=bool)
            mname = f'{im_id:06d}_{gt_index:06d}.png'
            atomic_write_png(self.dir / 'mask' / mname, mask.astype(np.uint8) * 255)
            atomic_write_png(self.dir / 'mask_visib' / mname,
                             (mask_visib & mask).astype(np.uint8) * 255)
            infos.append(gt_info_entry(mask, mask_visib, depth_m))
        key = str(im_id)
        self.scene_camera[key] = cam
        self.scene_gt[key] = gts
        self.scene_gt_info[key] = infos

    def close(self):
        """Write scene_camera.json, scene_gt.json and scene_gt_info.json."""
        write_json_atomic(self.dir / 'scene_camera.json', self.scene_camera)
        write_json_atomic(self.dir / 'scene_gt.json', self.scene_gt)
        write_json_atomic(self.dir / 'scene_gt_info.json', self.scene_gt_info)

    def __enter__(self):
        """Context manager: the JSON files are written on a clean exit."""
        return self

    def __exit__(self, exc_type, *exc):
        """Write the JSON files unless an exception is propagating."""
        if exc_type is None:
            self.close()
