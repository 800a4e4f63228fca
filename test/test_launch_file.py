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
  oracle backends, and the test waits until every node it launches is on the ROS graph and
  none has exited with an error.
"""

import ast
from pathlib import Path
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


def literal(node):
    """The value of a constant expression, or None when it is computed at launch time."""
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
    return ast.parse(source, filename=str(LAUNCH_FILE))


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


def bopask_ros_executables():
    """``ros2 run bopask_ros`` names: NODE_MODULES whose module defines ``main``."""
    names = {'bopask'}
    for module in setup_py_tuple(REPO / 'setup.py', 'NODE_MODULES'):
        path = REPO / 'bopask_ros' / f'{module}.py'
        if path.is_file():
            tree = ast.parse(path.read_text())
            if any(isinstance(n, ast.FunctionDef) and n.name == 'main' for n in tree.body):
                names.add(module)
    return names


def test_launch_file_defines_generate_launch_description(launch_tree):
    functions = {n.name for n in launch_tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    assert node_actions(launch_tree), 'the launch file starts no Node'


def test_every_node_is_an_installed_executable(launch_tree):
    ours = bopask_ros_executables()
    gen = set(setup_py_tuple(REPO / 'gen' / 'setup.py', 'ROS_RUN_COMMANDS'))
    deps = declared_dependencies()
    for package, executable, call in node_actions(launch_tree):
        where = f'{LAUNCH_FILE.name}:{call.lineno}'
        assert package is not None, f'{where}: Node package must be a literal'
        assert executable is not None, f'{where}: Node executable must be a literal'
        if package == 'bopask_ros':
            assert executable in ours, (
                f'{where}: executable {executable!r} is not installed by bopask_ros '
                f'(setup.py NODE_MODULES with a main(): {sorted(ours)})')
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

    from launch import LaunchDescription, LaunchService

    declared = {literal(c.args[0]) for c in calls(launch_tree, 'DeclareLaunchArgument')}
    arguments = {k: v for k, v in OFFLINE_ARGUMENTS.items() if k in declared}
    expected = {literal(keyword(c, 'name')) for _, _, c in node_actions(launch_tree)
                if keyword(c, 'name') is not None} - {None}
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
    seen = set()

    def watch():
        rclpy.init()
        node = rclpy.create_node('bopask_launch_file_test')
        try:
            deadline = time.monotonic() + 90.0
            while time.monotonic() < deadline and not (expected <= seen):
                seen.update(name for name, _ in node.get_node_names_and_namespaces())
                if exits:
                    break
                time.sleep(0.5)
        finally:
            node.destroy_node()
            rclpy.shutdown()
            stopping.set()
            service.shutdown()  # thread-safe

    watcher = threading.Thread(target=watch)
    watcher.start()
    rc = service.run()  # the main thread: launch installs its signal handlers here
    watcher.join()
    assert expected <= seen, f'nodes never on the graph: {sorted(expected - seen)}'
    assert not exits, f'processes ended while the graph should be running: {exits}'
    assert rc == 0
