"""Reader for datasets in the BOP format (https://bop.felk.cvut.cz/datasets/).

Layout: ``DATASET/models/{models_info.json, obj_XXXXXX.ply}`` and
``DATASET/SPLIT/{scene:06d}/{scene_camera,scene_gt,scene_gt_info}.json`` with ``rgb/``,
``depth/``, ``mask/`` and ``mask_visib/`` images. BOP stores millimetres; everything this
module returns is in metres (poses, models, depth). Errors name the file and the key.
"""

from dataclasses import dataclass, field
import functools
import json
from pathlib import Path

import cv2
import numpy as np

from bopask_gen.core.errors import BopFormatError
from bopask_gen.core.transforms import invert_transform, make_transform

MM = 1e-3
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif')


def load_json(path):
    """Read a JSON file; a missing or corrupt file raises BopFormatError naming it."""
    path = Path(path)
    if not path.is_file():
        raise BopFormatError(path, 'file not found')
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BopFormatError(path, f'not valid JSON ({exc})') from exc


def require(mapping, key, path, context=''):
    """Return ``mapping[key]`` or raise BopFormatError naming the file and the key path."""
    if not isinstance(mapping, dict) or key not in mapping:
        raise BopFormatError(path, 'missing key', key=f'{context}{key}')
    return mapping[key]


def require_array(mapping, key, path, shape, context=''):
    """Return ``mapping[key]`` as a float array of ``shape``; wrong sizes name file and key."""
    value = require(mapping, key, path, context)
    try:
        arr = np.asarray(value, dtype=float)
        return arr.reshape(shape)
    except (TypeError, ValueError) as exc:
        raise BopFormatError(
            path, f'expected {np.prod(shape)} numbers, got {value!r}', key=f'{context}{key}'
        ) from exc


def read_image(path, kind):
    """Read an image file and check its dtype and channels.

    ``kind`` is ``'rgb'`` (uint8 HxWx3, returned in RGB order), ``'depth'`` (uint16 HxW) or
    ``'mask'`` (HxW, returned as bool).
    """
    path = Path(path)
    if not path.is_file():
        raise BopFormatError(path, 'file not found')
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BopFormatError(path, 'unreadable or corrupt image')
    if kind == 'rgb':
        if img.dtype != np.uint8:
            raise BopFormatError(path, f'rgb image must be uint8, got {img.dtype}')
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return img
    if kind == 'depth':
        if img.dtype != np.uint16 or img.ndim != 2:
            raise BopFormatError(
                path, f'depth image must be single-channel uint16, got {img.dtype} {img.shape}'
            )
        return img
    if kind == 'mask':
        if img.ndim == 3:
            img = img[:, :, 0]
        return img > 0
    raise ValueError(f'unknown image kind {kind!r}')


def depth_mm_from_raw(raw, depth_scale):
    """Convert a raw BOP depth image to millimetres: ``depth_mm = raw * depth_scale``."""
    return raw.astype(np.float32) * np.float32(depth_scale)


@dataclass
class ObjectInfo:
    """One entry of models_info.json, in metres."""

    obj_id: int
    diameter: float
    bbox_min: np.ndarray
    bbox_size: np.ndarray
    symmetries_discrete: list = field(default_factory=list)
    symmetries_continuous: list = field(default_factory=list)

    def cuboid_corners(self):
        """Return the 8 model-frame corners of the 3D bounding box, (8, 3) metres.

        Order: x varies fastest, then y, then z (index bits z y x). Task code reorders them.
        """
        lo, size = self.bbox_min, self.bbox_size
        return np.array(
            [[lo[0] + size[0] * x, lo[1] + size[1] * y, lo[2] + size[2] * z]
             for z in (0, 1) for y in (0, 1) for x in (0, 1)]
        )


@dataclass
class GtInstance:
    """One annotated object instance of a frame."""

    gt_index: int
    obj_id: int
    T_m2c: np.ndarray
    visib_fract: float = None
    bbox_obj: tuple = None
    bbox_visib: tuple = None
    px_count_visib: int = None


@dataclass
class Frame:
    """One image of a BOP scene: camera, ground truth and lazily loaded images."""

    dataset: str
    split: str
    scene_id: int
    im_id: int
    scene_dir: Path
    K: np.ndarray
    depth_scale: float
    T_w2c: np.ndarray
    gts: list

    def image_path(self, folder):
        """Return the path of this frame's image in ``folder`` (rgb, depth, gray)."""
        stem = self.scene_dir / folder / f'{self.im_id:06d}'
        for ext in IMAGE_EXTENSIONS:
            if stem.with_suffix(ext).is_file():
                return stem.with_suffix(ext)
        raise BopFormatError(stem.with_suffix('.png'), f'no {folder} image for this frame')

    def mask_path(self, gt_index, visible=True):
        """Return the path of the (visible) mask of one GT instance."""
        folder = 'mask_visib' if visible else 'mask'
        return self.scene_dir / folder / f'{self.im_id:06d}_{gt_index:06d}.png'

    def rgb(self):
        """Return the colour image, uint8 HxWx3 in RGB order."""
        return read_image(self.image_path('rgb'), 'rgb')

    def depth_mm(self):
        """Return depth in millimetres (float32, 0 = no measurement)."""
        return depth_mm_from_raw(read_image(self.image_path('depth'), 'depth'), self.depth_scale)

    def depth_m(self):
        """Return depth in metres (float32, 0 = no measurement)."""
        return self.depth_mm() * np.float32(MM)

    def mask_visib(self, gt_index):
        """Return the visible-part mask of one GT instance (bool HxW)."""
        return read_image(self.mask_path(gt_index, visible=True), 'mask')

    def mask(self, gt_index):
        """Return the full silhouette mask of one GT instance (bool HxW)."""
        return read_image(self.mask_path(gt_index, visible=False), 'mask')

    @property
    def T_c2w(self):
        """Camera-to-world transform from the dataset's cam_R_w2c/cam_t_w2c, or None."""
        if self.T_w2c is None:
            return None
        return invert_transform(self.T_w2c)


class BopScene:
    """One scene folder: its camera, GT and GT-info files, read once."""

    def __init__(self, dataset, split, scene_id):
        self.dataset = dataset
        self.split = split
        self.scene_id = int(scene_id)
        self.dir = dataset.root / split / f'{self.scene_id:06d}'
        if not self.dir.is_dir():
            raise BopFormatError(self.dir, 'scene folder not found')
        self.camera_path = self.dir / 'scene_camera.json'
        self.gt_path = self.dir / 'scene_gt.json'
        self.gt_info_path = self.dir / 'scene_gt_info.json'
        self.scene_camera = load_json(self.camera_path)
        self.scene_gt = load_json(self.gt_path)
        self.scene_gt_info = load_json(self.gt_info_path) if self.gt_info_path.is_file() else {}

    @property
    def image_ids(self):
        """Sorted image ids annotated in scene_gt.json."""
        return sorted(int(k) for k in self.scene_gt)

    def frame(self, im_id):
        """Return the Frame of one image id."""
        key = str(int(im_id))
        cam = require(self.scene_camera, key, self.camera_path)
        ctx = f'{key}/'
        K = require_array(cam, 'cam_K', self.camera_path, (3, 3), ctx)
        depth_scale = float(require(cam, 'depth_scale', self.camera_path, ctx))
        T_w2c = None
        if 'cam_R_w2c' in cam and 'cam_t_w2c' in cam:
            R = require_array(cam, 'cam_R_w2c', self.camera_path, (3, 3), ctx)
            t = require_array(cam, 'cam_t_w2c', self.camera_path, (3,), ctx) * MM
            T_w2c = make_transform(R, t)
        gts = []
        entries = require(self.scene_gt, key, self.gt_path)
        infos = self.scene_gt_info.get(key, [])
        for i, entry in enumerate(entries):
            gctx = f'{key}/{i}/'
            R = require_array(entry, 'cam_R_m2c', self.gt_path, (3, 3), gctx)
            t = require_array(entry, 'cam_t_m2c', self.gt_path, (3,), gctx) * MM
            obj_id = int(require(entry, 'obj_id', self.gt_path, gctx))
            info = infos[i] if i < len(infos) else {}
            gts.append(GtInstance(
                gt_index=i, obj_id=obj_id, T_m2c=make_transform(R, t),
                visib_fract=info.get('visib_fract'),
                bbox_obj=tuple(info['bbox_obj']) if 'bbox_obj' in info else None,
                bbox_visib=tuple(info['bbox_visib']) if 'bbox_visib' in info else None,
                px_count_visib=info.get('px_count_visib'),
            ))
        return Frame(
            dataset=self.dataset.name, split=self.split, scene_id=self.scene_id,
            im_id=int(im_id), scene_dir=self.dir, K=K, depth_scale=depth_scale,
            T_w2c=T_w2c, gts=gts,
        )

    def frames(self):
        """Iterate over all frames of the scene."""
        for im_id in self.image_ids:
            yield self.frame(im_id)


class BopDataset:
    """A BOP dataset folder: models, models_info and split/scene folders."""

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise BopFormatError(self.root, 'dataset folder not found')
        self.name = self.root.name
        self.models_dir = self.root / 'models'
        self.models_info_path = self.models_dir / 'models_info.json'
        self._models_info = None

    @property
    def models_info(self):
        """Dict obj_id -> ObjectInfo (metres), read from models/models_info.json."""
        if self._models_info is None:
            raw = load_json(self.models_info_path)
            infos = {}
            for key, entry in raw.items():
                ctx = f'{key}/'
                lo = [float(require(entry, f'min_{a}', self.models_info_path, ctx)) for a in 'xyz']
                size = [float(require(entry, f'size_{a}', self.models_info_path, ctx))
                        for a in 'xyz']
                infos[int(key)] = ObjectInfo(
                    obj_id=int(key),
                    diameter=float(require(entry, 'diameter', self.models_info_path, ctx)) * MM,
                    bbox_min=np.array(lo) * MM, bbox_size=np.array(size) * MM,
                    symmetries_discrete=entry.get('symmetries_discrete', []),
                    symmetries_continuous=entry.get('symmetries_continuous', []),
                )
            self._models_info = infos
        return self._models_info

    def model_path(self, obj_id):
        """Path of the PLY model of an object."""
        return self.models_dir / f'obj_{int(obj_id):06d}.ply'

    def has_model(self, obj_id):
        """True when both the PLY file and a models_info entry exist for the object."""
        return self.model_path(obj_id).is_file() and int(obj_id) in self.models_info

    def model_mesh(self, obj_id):
        """Return the object's mesh as a trimesh.Trimesh in metres (model frame), cached."""
        return _load_ply_mesh(str(self.model_path(obj_id)))

    def splits(self):
        """Names of the split folders (those holding scene folders)."""
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and p.name != 'models' and not p.name.startswith('models_'))

    def scene_ids(self, split):
        """Sorted scene ids of a split."""
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise BopFormatError(split_dir, 'split folder not found')
        return sorted(int(p.name) for p in split_dir.iterdir()
                      if p.is_dir() and p.name.isdigit())

    def scene(self, split, scene_id):
        """Return a BopScene."""
        return BopScene(self, split, scene_id)

    def frames(self, split):
        """Iterate over every frame of a split, scene by scene."""
        for scene_id in self.scene_ids(split):
            yield from self.scene(split, scene_id).frames()


@functools.lru_cache(maxsize=64)
def _load_ply_mesh(path):
    import trimesh
    p = Path(path)
    if not p.is_file():
        raise BopFormatError(p, 'model file not found')
    try:
        # Geometry only: textures are often absent and never needed here.
        mesh = trimesh.load(p, force='mesh', process=False, skip_materials=True)
    except Exception as exc:  # trimesh raises many types on corrupt files
        raise BopFormatError(p, f'unreadable PLY model ({exc})') from exc
    if len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        raise BopFormatError(p, 'PLY model has no vertices or faces')
    mesh.apply_scale(MM)
    return mesh
