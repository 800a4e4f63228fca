"""``launch/pick_place.launch.py`` is a valid launch_ros file whose nodes and files exist.

Two levels:

- Always (no ROS install needed): the file parses; every ``Node`` it names is an executable
  that the package installs (``bopask_ros`` nodes: ``NODE_MODULES`` of setup.py with a
  ``main``, which test_colcon_build checks land in lib/bopask_ros; ``bopask_gen``: its
  ``ros2 run`` commands) or comes from a package that package.xml declares; every parameter
  file it names is in config/ (installed to share/bopask_ros/config); every launch argument
  it reads is declared.
- On a ROS 2 install (``launch`` and ``launch_ros`` importable): the launch file is started
  with ``launch.LaunchService`` (the engine under launch_testing) with the simulator and
  oracle backends, and the test waits until the graph's topics have their publishers and
  subscribers (camera, joint states, keypoints, grasp requests, trajectories, commands) and
  no process has ended.
"""

import ast
import os
from pathlib import Path
import re
import shutil
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / 'launch' / 'pick_place.launch.py'
OUR_PACKAGES = ('bopask_ros', 'bopask_gen')
# Launch argument values that keep the graph off hardware and model weights.
OFFLINE_ARGUMENTS = {'camera': 'sim', 'camera_backend': 'sim', 'vlm': 'oracle',
                     'vlm_backend': 'oracle', 'executor': 'ik', 'executor_backend': 'ik',
                     'use_sim': 'true', 'sim': 'true'}


def setup_py_tuple(setup_py, name):
    """Return the string tuple assigned to ``name`` at the top level of a setup.py (no exec)."""
    tree = ast.parse(Path(setup_py).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f'{setup_py}: no top-level assignment to {name}')


def call_name(call):
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)


# Module-level ``NAME = 'literal'`` assignments of the launch file (e.g. PACKAGE).
CONSTANTS = {}


def literal(node):
    """The value of a constant expression (or of a module-level constant), else None."""
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def keyword(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


@pytest.fixture(scope='module')
def launch_tree():
    assert LAUNCH_FILE.is_file(), f'{LAUNCH_FILE} is missing'
    source = LAUNCH_FILE.read_text()
    compile(source, str(LAUNCH_FILE), 'exec')  # valid Python, not only a valid AST
    tree = ast.parse(source, filename=str(LAUNCH_FILE))
    CONSTANTS.clear()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                CONSTANTS[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return tree


def calls(tree, *names):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and call_name(n) in names]


def node_actions(tree):
    """[(package, executable, call)] of every launch_ros Node / ComposableNode action."""
    out = []
    for call in calls(tree, 'Node', 'LifecycleNode'):
        package, executable = keyword(call, 'package'), keyword(call, 'executable')
        out.append((literal(package) if package is not None else None,
                    literal(executable) if executable is not None else None, call))
    return out


def declared_dependencies():
    root = ET.parse(REPO / 'package.xml').getroot()
    return {e.text.strip() for e in root if e.tag.endswith('depend') and e.text}


def console_script_modules():
    """``{name: module}`` of the literal console_scripts in setup.py plus NODE_MODULES."""
    tree = ast.parse((REPO / 'setup.py').read_text())
    out = {name: f'bopask_ros.{name}' for name in setup_py_tuple(REPO / 'setup.py',
                                                                  'NODE_MODULES')}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(r'\s*[\w.-]+\s*=\s*[\w.]+:main\s*', node.value):
            name, module = (part.strip() for part in node.value.split('='))
            out[name] = module.split(':')[0]
    return out


@pytest.fixture(scope='module')
def bopask_ros_executables(tmp_path_factory):
    """``ros2 run bopask_ros`` names: what colcon installs into lib/bopask_ros.

    Without colcon: the console scripts of setup.py whose module defines ``main``.
    """
    colcon = shutil.which('colcon')
    if colcon is not None:
        ws = tmp_path_factory.mktemp('launch_ws')
        env = {k: v for k, v in os.environ.items() if k not in ('PYTHONHOME', 'PYTHONPATH')}
        proc = subprocess.run(
            [colcon, '--log-base', str(ws / 'log'), 'build', '--base-paths', str(REPO),
             str(REPO / 'gen'), '--build-base', str(ws / 'build'),
             '--install-base', str(ws / 'install'), '--event-handlers', 'console_direct-'],
            cwd=ws, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        lib = ws / 'install' / 'bopask_ros' / 'lib' / 'bopask_ros'
        return {p.name for p in lib.iterdir() if os.access(p, os.X_OK)}
    names = set()
    for name, module in console_script_modules().items():
        path = REPO / Path(*module.split('.')).with_suffix('.py')
        if path.is_file():
            tree = ast.parse(path.read_text())
            if any(isinstance(n, ast.FunctionDef) and n.name == 'main' for n in tree.body):
                names.add(name)
    return names


def test_launch_file_defines_generate_launch_description(launch_tree):
    functions = {n.name for n in launch_tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    assert node_actions(launch_tree), 'the launch file starts no Node'


def test_every_node_is_an_installed_executable(launch_tree, bopask_ros_executables):
    ours = bopask_ros_executables
    gen = set(setup_py_tuple(REPO / 'gen' / 'setup.py', 'ROS_RUN_COMMANDS'))
    deps = declared_dependencies()
    for package, executable, call in node_actions(launch_tree):
        where = f'{LAUNCH_FILE.name}:{call.lineno}'
        assert package is not None, f'{where}: Node package must be a literal'
        assert executable is not None, f'{where}: Node executable must be a literal'
        if package == 'bopask_ros':
            assert executable in ours, (
                f'{where}: executable {executable!r} is not installed by bopask_ros '
                f'(installed: {sorted(ours)})')
        elif package == 'bopask_gen':
            assert executable in gen, f'{where}: bopask_gen has no executable {executable!r}'
        else:
            assert package in deps, (
                f'{where}: Node from {package!r}, which package.xml does not declare')


def test_other_packages_it_uses_are_declared(launch_tree):
    deps = declared_dependencies()
    for call in calls(launch_tree, 'FindPackageShare', 'get_package_share_directory',
                      'get_package_prefix'):
        package = literal(call.args[0]) if call.args else None
        assert package is not None, f'line {call.lineno}: package name must be a literal'
        assert package in OUR_PACKAGES or package in deps, (
            f'line {call.lineno}: uses package {package!r}, which package.xml does not declare')


def test_every_parameter_file_it_names_exists(launch_tree):
    names = {n.value for n in ast.walk(launch_tree)
             if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and n.value.endswith(('.yaml', '.yml'))}
    assert names, 'the launch file names no parameter file'
    for name in names:
        assert (REPO / 'config' / Path(name).name).is_file(), (
            f'{LAUNCH_FILE.name} names {name!r}, which is not in config/')


def test_every_launch_argument_it_reads_is_declared(launch_tree):
    declared = {literal(c.args[0]) for c in calls(launch_tree, 'DeclareLaunchArgument')
                if c.args}
    read = {literal(c.args[0]) for c in calls(launch_tree, 'LaunchConfiguration') if c.args}
    assert read <= declared, f'read but not declared: {sorted(read - declared)}'


def argument_text(node):
    """The text of a literal or f-string launch argument (module constants filled in)."""
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue) and literal(value.value) is not None:
                parts.append(str(literal(value.value)))
            else:
                return None       # a value known only at launch time
        return ''.join(parts)
    value = literal(node)
    return value if isinstance(value, str) else None


def test_sim_process_holds_only_the_nodes_that_share_the_simulator(launch_tree):
    """bopask_graph runs sim, camera and vlm (one MuJoCo world); the others are own Nodes."""
    from bopask_ros.graph import NODES, resolve
    graphs = [call for package, executable, call in node_actions(launch_tree)
              if executable == 'bopask_graph']
    assert len(graphs) == 1, 'the sim branch must start bopask_graph once'
    arguments = keyword(graphs[0], 'arguments')
    assert isinstance(arguments, ast.List), 'bopask_graph arguments must be a list'
    texts = [argument_text(a) for a in arguments.elts]
    selections = [t for t in texts if t is not None and t.startswith('nodes:=')]
    assert len(selections) == 1, f'bopask_graph needs one nodes:= argument, got {texts}'
    selected = selections[0].split(':=', 1)[1]
    assert selected.split(',') == ['sim_node', 'camera_node', 'vlm_node'], selected
    # The graph accepts the selection (it keeps the simulator's users together).
    _, _, names = resolve({'nodes': selected, 'camera_backend': 'sim',
                           'vlm_backend': 'oracle'})
    assert names == ['sim_node', 'camera_node', 'vlm_node']
    own = {executable for _, executable, _ in node_actions(launch_tree)}
    for name, _, _ in NODES:
        if name not in names:
            assert name in own, f'{name} runs in no process of the sim branch'


# ----------------------------------------------------------------------------- ROS install
def _ros_launch_available():
    try:
        import launch_ros  # noqa: F401

        import launch
    except ImportError:
        return False
    # The unrelated PyPI package named `launch` has no LaunchService.
    return hasattr(launch, 'LaunchService')


@pytest.mark.skipif(not _ros_launch_available(),
                    reason='launch/launch_ros are not importable (no ROS 2 install); the '
                           'static checks above cover the file')
def test_launch_file_starts_the_graph(launch_tree):
    from launch.actions import IncludeLaunchDescription, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    import rclpy

    from bopask_ros import ros_common as rc
    from launch import LaunchDescription, LaunchService

    declared = {literal(c.args[0]) for c in calls(launch_tree, 'DeclareLaunchArgument')}
    arguments = {k: v for k, v in OFFLINE_ARGUMENTS.items() if k in declared}
    # The graph, whatever its processes and node names: who publishes / subscribes what.
    publishers = (rc.COLOR_TOPIC, rc.DEPTH_TOPIC, rc.INFO_TOPIC, rc.JOINT_STATES_TOPIC,
                  rc.STATUS_TOPIC, rc.KEYPOINTS_TOPIC, rc.GRASP_REQUEST_TOPIC,
                  rc.ARM_TRAJECTORY_TOPIC)
    subscribers = (rc.COMMAND_TOPIC, rc.ARM_TRAJECTORY_TOPIC, rc.GRASP_REQUEST_TOPIC)
    exits = []        # processes that ended before the test stopped the launch
    stopping = threading.Event()

    def on_exit(event, _context):
        if not stopping.is_set():
            exits.append((event.action.name, event.returncode))

    ld = LaunchDescription([
        RegisterEventHandler(OnProcessExit(on_exit=on_exit)),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
                                 launch_arguments=arguments.items()),
    ])
    service = LaunchService()
    service.include_launch_description(ld)
    missing = {}

    def watch():
        rclpy.init()
        node = rclpy.create_node('bopask_launch_file_test')
        try:
            deadline = time.monotonic() + 90.0
            while time.monotonic() < deadline and not exits:
                missing.clear()
                missing.update({t: 'publisher' for t in publishers
                                if node.count_publishers(t) == 0})
                missing.update({t: 'subscriber' for t in subscribers
                                if node.count_subscribers(t) == 0})
                if not missing:
                    break
                time.sleep(0.5)
        finally:
            node.destroy_node()
            rclpy.shutdown()
            stopping.set()
            service.shutdown()  # thread-safe

    watcher = threading.Thread(target=watch)
    watcher.start()
    rc_launch = service.run()  # the main thread: launch installs its signal handlers here
    watcher.join()
    assert not exits, f'processes ended while the graph should be running: {exits}'
    assert not missing, f'never on the graph after 90 s: {missing}'
    assert rc_launch == 0
