"""Choose MuJoCo's headless OpenGL backend before mujoco is imported.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, so the choice must be
made before that: :func:`ensure_gl_backend` keeps a backend the user set, otherwise picks
``egl`` when its libraries load and falls back to ``osmesa``. When neither can work the
error names the Debian packages to install.
"""

import ctypes
import os
import sys

BACKEND_LIBRARIES = {
    # backend -> [(shared library, Debian package providing it), ...]
    'egl': [
        ('libEGL.so.1', 'libegl1'),
        ('libEGL_mesa.so.0', 'libegl-mesa0'),
        ('libGL.so.1', 'libgl1'),
    ],
    'osmesa': [
        ('libOSMesa.so.8', 'libosmesa6'),
    ],
}
'''Shared libraries each backend needs and the Debian package that ships each one.'''

DRI_DIRS = ('/usr/lib/x86_64-linux-gnu/dri', '/usr/lib/aarch64-linux-gnu/dri', '/usr/lib/dri')
'''Where Mesa's DRI drivers (libgl1-mesa-dri) live; EGL renders through them.'''
FALLBACK_ORDER = ('egl', 'osmesa')


class RenderBackendError(RuntimeError):
    """No OpenGL backend can render headless; the message names the packages to install."""


def _default_loader(name):
    ctypes.CDLL(name)


def _default_dri_present():
    return any(os.path.isdir(d) and any(f.endswith('_dri.so') for f in os.listdir(d))
               for d in DRI_DIRS)


def missing_packages(backend, loader=_default_loader, dri_present=_default_dri_present):
    """Return the Debian packages whose libraries ``backend`` needs but cannot load."""
    missing = []
    for lib, package in BACKEND_LIBRARIES[backend]:
        try:
            loader(lib)
        except OSError:
            missing.append(package)
    if backend == 'egl' and not dri_present():
        missing.append('libgl1-mesa-dri')
    return missing


def choose_backend(requested=None, loader=_default_loader, dri_present=_default_dri_present):
    """Return the backend to use: ``requested`` if given and usable, else egl, else osmesa.

    Raises RenderBackendError naming the missing Debian packages when none is usable.
    """
    order = list(FALLBACK_ORDER)
    if requested:
        requested = requested.lower().strip()
        if requested not in BACKEND_LIBRARIES:
            # glfw/glx need a display; trust the user who asked for it explicitly.
            return requested
        order.remove(requested)
        order.insert(0, requested)
    report = {}
    for backend in order:
        missing = missing_packages(backend, loader, dri_present)
        if not missing:
            return backend
        report[backend] = missing
    details = '; '.join(f'{b}: install {" ".join(p)}' for b, p in report.items())
    raise RenderBackendError(
        'no headless OpenGL backend for MuJoCo rendering works here '
        f'({details}). On Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 '
        'libgl1-mesa-dri (for MUJOCO_GL=egl) or libosmesa6 (for MUJOCO_GL=osmesa).'
    )


def ensure_gl_backend():
    """Set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) before mujoco is imported; return it.

    If mujoco is already imported, its choice stands and is returned unchanged.
    """
    current = os.environ.get('MUJOCO_GL')
    if 'mujoco' in sys.modules:
        return current
    backend = choose_backend(current)
    os.environ['MUJOCO_GL'] = backend
    if backend in ('egl', 'osmesa'):
        os.environ['PYOPENGL_PLATFORM'] = backend  # the two must agree
    return backend


def render_failure_message(exc):
    """Explain a failed OpenGL context creation (``exc``) and how to fix it."""
    current = os.environ.get('MUJOCO_GL')
    text = f'MuJoCo could not create an offscreen OpenGL context (MUJOCO_GL={current!r}: {exc}). '
    if not current:
        text += ('mujoco was imported before bopask_gen.sim chose a headless backend: import '
                 'bopask_gen.sim.world first, or export MUJOCO_GL=egl (or osmesa). ')
    return text + ('Headless rendering needs the Debian packages libegl1 libegl-mesa0 '
                   'libgl1-mesa-dri (MUJOCO_GL=egl) or libosmesa6 (MUJOCO_GL=osmesa).')
