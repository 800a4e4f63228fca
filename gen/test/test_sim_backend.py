"""Headless OpenGL backend choice for MuJoCo: egl, fallback osmesa, clear error otherwise."""

import os
from pathlib import Path
import subprocess
import sys

import pytest

from bopask_gen.sim.backend import choose_backend, missing_packages, RenderBackendError


def _loader_without(*missing):
    def loader(name):
        if name in missing:
            raise OSError(f'{name}: cannot open shared object file')
    return loader


def test_egl_preferred_when_its_libraries_load():
    assert choose_backend(None, loader=_loader_without(), dri_present=lambda: True) == 'egl'


def test_falls_back_to_osmesa_without_egl():
    loader = _loader_without('libEGL.so.1')
    assert missing_packages('egl', loader, lambda: True) == ['libegl1']
    assert choose_backend(None, loader=loader, dri_present=lambda: True) == 'osmesa'


def test_falls_back_to_osmesa_without_dri_drivers():
    assert choose_backend(None, loader=_loader_without(), dri_present=lambda: False) == 'osmesa'


def test_requested_backend_is_tried_first():
    assert choose_backend('osmesa', loader=_loader_without(), dri_present=lambda: True) == 'osmesa'
    # A requested backend that cannot work falls back to the other one.
    loader = _loader_without('libOSMesa.so.8')
    assert choose_backend('osmesa', loader=loader, dri_present=lambda: True) == 'egl'


def test_error_names_the_debian_packages_when_nothing_works():
    loader = _loader_without('libEGL.so.1', 'libEGL_mesa.so.0', 'libOSMesa.so.8')
    with pytest.raises(RenderBackendError) as err:
        choose_backend(None, loader=loader, dri_present=lambda: False)
    text = str(err.value)
    for package in ('libegl1', 'libegl-mesa0', 'libgl1-mesa-dri', 'libosmesa6'):
        assert package in text


RENDER_SCRIPT = (
    'import os; from bopask_gen.sim.world import World; '
    'w = World(obj_ids=[21], seed=0); img = w.render_rgb(); w.close(); '
    'print(os.environ["MUJOCO_GL"], float(img.std()))'
)


@pytest.mark.parametrize('requested', [None, 'osmesa'])
def test_real_headless_render(requested):
    env = {k: v for k, v in os.environ.items() if k not in ('MUJOCO_GL', 'PYOPENGL_PLATFORM')}
    if requested:
        env['MUJOCO_GL'] = requested
    out = subprocess.run([sys.executable, '-c', RENDER_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr[-2000:]
    backend, std = out.stdout.split()[-2:]
    assert backend == (requested or 'egl')
    assert float(std) > 5.0  # a real picture, not a blank buffer


def test_mujoco_imported_too_early_gives_a_clear_error():
    script = ('import mujoco; from bopask_gen.sim.backend import RenderBackendError\n'
              'from bopask_gen.sim.world import World\n'
              'try:\n    World(obj_ids=[21], seed=0)\n'
              'except RenderBackendError as exc:\n    print(exc)\n')
    env = {k: v for k, v in os.environ.items()
           if k not in ('MUJOCO_GL', 'PYOPENGL_PLATFORM', 'DISPLAY')}
    out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'imported before' in out.stdout and 'libosmesa6' in out.stdout
