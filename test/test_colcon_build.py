"""``colcon build`` of both packages gives the install tree a ROS 2 install resolves.

``ros2 run PKG NAME`` looks for ``<prefix>/lib/PKG/NAME``, ``ros2 launch`` for
``<prefix>/share/PKG/launch/NAME``, and both find packages through the ament resource index.
The repository root is itself a package, so colcon's crawl does not descend into ``gen/``:
both paths are given as base paths (the runbook uses the same command).
"""

import ast
import configparser
import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
COLCON = shutil.which('colcon')


@pytest.fixture(autouse=True)
def require_colcon():
    """Fail (not skip) without colcon: `make test` installs it, so its absence is a bug."""
    assert COLCON, ('colcon is not on PATH (Debian: apt-get install colcon python3-colcon-ros;'
                    ' `make system-deps` installs it)')


def setup_py_tuple(setup_py, name):
    """Return the string tuple assigned to ``name`` at the top level of a setup.py (no exec)."""
    tree = ast.parse(Path(setup_py).read_text(), filename=str(setup_py))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f'{setup_py}: no top-level assignment to {name}')


NODE_MODULES = setup_py_tuple(REPO / 'setup.py', 'NODE_MODULES')
GEN_COMMANDS = setup_py_tuple(REPO / 'gen' / 'setup.py', 'ROS_RUN_COMMANDS')


@pytest.fixture(scope='module')
def install_tree(tmp_path_factory):
    """Build both packages with colcon into a fresh workspace; return the install base."""
    ws = tmp_path_factory.mktemp('colcon_ws')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONHOME', 'PYTHONPATH')}
    cmd = [COLCON, '--log-base', str(ws / 'log'), 'build',
           '--base-paths', str(REPO), str(REPO / 'gen'),
           '--build-base', str(ws / 'build'), '--install-base', str(ws / 'install'),
           '--event-handlers', 'console_direct-']
    proc = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f'colcon build failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}')
    return ws / 'install'


def entry_points(install, pkg):
    """``{script: 'module:function'}`` from the installed egg-info of ``pkg``."""
    found = sorted(install.glob(f'{pkg}/lib/python3*/site-packages/{pkg}*-info/entry_points.txt'))
    assert found, f'no installed egg-info with entry_points.txt for {pkg} under {install}'
    parser = configparser.ConfigParser(delimiters=('=',))
    parser.optionxform = str  # keep names such as grasp-check as they are
    parser.read(found[0])
    return {k.strip(): v.strip() for k, v in parser['console_scripts'].items()}


def test_both_packages_in_the_ament_resource_index(install_tree):
    for pkg in ('bopask_ros', 'bopask_gen'):
        marker = install_tree / pkg / 'share/ament_index/resource_index/packages' / pkg
        assert marker.is_file(), f'{marker} missing: ros2 would not find {pkg}'
        assert (install_tree / pkg / 'share' / pkg / 'package.xml').is_file()


def test_every_node_is_a_ros2_run_executable(install_tree):
    assert NODE_MODULES, 'setup.py lists no node modules'
    scripts = entry_points(install_tree, 'bopask_ros')
    site = next(install_tree.glob('bopask_ros/lib/python3*/site-packages'))
    for node in NODE_MODULES:
        exe = install_tree / 'bopask_ros/lib/bopask_ros' / node
        assert exe.is_file() and os.access(exe, os.X_OK), f'{exe} missing or not executable'
        assert scripts.get(node) == f'bopask_ros.{node}:main', scripts
        assert (site / 'bopask_ros' / f'{node}.py').is_file(), f'{node}.py not installed'
    assert scripts.get('bopask') == 'bopask_ros.cli:main'


def test_generator_commands_are_ros2_run_executables(install_tree):
    scripts = entry_points(install_tree, 'bopask_gen')
    assert 'build' in GEN_COMMANDS
    for name in GEN_COMMANDS:
        exe = install_tree / 'bopask_gen/lib/bopask_gen' / name
        assert exe.is_file() and os.access(exe, os.X_OK), f'{exe} missing or not executable'
        assert scripts[name].startswith('bopask_gen.cli:'), scripts[name]
    site = next(install_tree.glob('bopask_gen/lib/python3*/site-packages'))
    assert (site / 'bopask_gen/core/camera.py').is_file()


def test_launch_and_config_files_are_installed(install_tree):
    share = install_tree / 'bopask_ros/share/bopask_ros'
    launch = share / 'launch/pick_place.launch.py'
    assert launch.is_file(), f'{launch} missing: ros2 launch bopask_ros pick_place.launch.py fails'
    source_configs = sorted(p.name for p in (REPO / 'config').glob('*.yaml'))
    assert source_configs, 'config/ holds no *.yaml parameter files'
    assert sorted(p.name for p in (share / 'config').glob('*.yaml')) == source_configs


def installed_env(install):
    """The environment ``source install/setup.bash`` gives Python: the install tree first."""
    paths = [str(p) for p in sorted(install.glob('*/lib/python3*/site-packages'))]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONHOME'}
    env['PYTHONPATH'] = os.pathsep.join(paths + [env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    return env


def test_installed_executables_run_from_the_install_tree(install_tree, tmp_path):
    # The scripts' shebang is colcon's Python; run them with this venv's Python (the one
    # that has the dependencies), as `ros2 run` would with a sourced install.
    env = installed_env(install_tree)
    for script, usage in (('bopask_gen/lib/bopask_gen/build', 'usage: bopask-gen build'),
                          ('bopask_ros/lib/bopask_ros/bopask', 'usage: bopask ')):
        proc = subprocess.run([sys.executable, str(install_tree / script), '--help'], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert usage in proc.stdout
    # Every node's entry point resolves to a main() imported from the install tree.
    code = (
        'from importlib.metadata import distribution\n'
        'import inspect, sys\n'
        "eps = {e.name: e for e in distribution('bopask_ros').entry_points}\n"
        'for name in sys.argv[1:]:\n'
        '    f = eps[name].load()\n'
        '    print(name, inspect.getsourcefile(f))\n'
    )
    proc = subprocess.run([sys.executable, '-c', code, *NODE_MODULES], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(ln.split(' ', 1) for ln in proc.stdout.splitlines() if ' ' in ln)
    for node in NODE_MODULES:
        assert lines.get(node, '').startswith(str(install_tree)), (node, lines.get(node))
