"""Launch file (parsed only: launch_ros is not installable here), graph arguments, YAML, CLI."""

import argparse
import ast
import os
from pathlib import Path

import numpy as np
import pytest

from bopask_ros import ros_common as rc
from bopask_ros.graph import node_parameters, NODES, parse_assignments, resolve

REPO = Path(__file__).resolve().parents[1]


def test_launch_file_declares_the_arguments_and_existing_executables():
    tree = ast.parse((REPO / 'launch' / 'pick_place.launch.py').read_text())
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, 'id', '') ==
                'DeclareLaunchArgument'}
    assert declared == {'camera_backend', 'vlm_backend', 'model_path', 'executor_backend',
                        'config', 'dry_run', 'publish_extrinsics'}
    # Our own executables (tf2_ros' static_transform_publisher is another package's).
    executables = {kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                   for kw in node.keywords if kw.arg == 'executable'
                   and not any(k.arg == 'package' and isinstance(k.value, ast.Constant)
                               for k in node.keywords)}
    setup = (REPO / 'setup.py').read_text()
    node_modules = setup.split('NODE_MODULES = (', 1)[1].split(')', 1)[0]
    for exe in executables:
        assert f"'{exe}'" in node_modules, exe     # ros2 run executables of setup.py
        assert (REPO / 'bopask_ros' / f'{exe}.py').is_file(), exe
    assert 'generate_launch_description' in {f.name for f in tree.body
                                             if isinstance(f, ast.FunctionDef)}


def test_yaml_parameters_are_declared_by_their_nodes():
    import importlib
    files = [rc.config_path('pick_place.yaml'), rc.config_path('extrinsics.yaml')]
    for name, module, _ in NODES:
        defaults = importlib.import_module(module).DEFAULTS
        params = node_parameters(name, files, {})
        # The extrinsic is a /** (every node) section; nodes that need it declare it.
        unknown = {k for k in set(params) - set(defaults) if not k.startswith('extrinsic.')}
        assert not unknown, f'{name}: YAML parameters not declared by the node: {unknown}'
        for key, value in params.items():
            if key not in defaults:
                continue
            assert type(value) is type(defaults[key]) or \
                (isinstance(value, (int, float)) and isinstance(defaults[key], float)), key



@pytest.mark.parametrize('node, params_class', [
    ('executor_node', 'bopask_ros.executor.ExecutorParams'),
    ('backprojection_node', 'bopask_ros.backprojection.BackprojectionParams'),
])
def test_plain_python_defaults_are_the_nodes_and_the_yamls(node, params_class):
    """The core's dataclass defaults (used without ROS) agree with the node and config."""
    import dataclasses
    import importlib
    module, cls = params_class.rsplit('.', 1)
    fields = dataclasses.fields(getattr(importlib.import_module(module), cls))
    defaults = importlib.import_module(f'bopask_ros.{node}').DEFAULTS
    yaml_values = node_parameters(node, [rc.config_path('pick_place.yaml')], {})
    for f in fields:
        for source, values in (('node DEFAULTS', defaults), ('pick_place.yaml', yaml_values)):
            if f.name in values:
                assert np.allclose(np.asarray(f.default, float),
                                   np.asarray(values[f.name], float)), (f.name, source)

def test_graph_arguments():
    assert parse_assignments(['a:=1', 'b:=x', 'c:=[1, 2]', 'd:=']) == \
        {'a': 1, 'b': 'x', 'c': [1, 2], 'd': ''}
    with pytest.raises(ValueError, match='name:=value'):
        parse_assignments(['camera_backend=sim'])
    files, overrides, names = resolve({'camera_backend': 'realsense', 'model_path': '/m',
                                       'executor_node.lift_height': 0.2})
    assert 'sim_node' not in names and overrides['vlm_node']['model_path'] == '/m'
    assert overrides['executor_node']['lift_height'] == 0.2
    assert [f.name for f in files] == ['pick_place.yaml', 'extrinsics.yaml']
    _, _, names = resolve({})
    assert names[0] == 'sim_node'       # the default camera backend is the simulator
    with pytest.raises(ValueError, match='unknown argument'):
        resolve({'cam_backend': 'sim'})
    with pytest.raises(FileNotFoundError):
        resolve({'config': 'missing.yaml'})


def test_graph_executor_argument():
    from bopask_ros.graph import executor_kind, Graph
    assert executor_kind({}) == 'multi'
    assert Graph({'executor': 'single', 'nodes': 'backprojection_node'}).executor_kind == \
        'single'
    with pytest.raises(ValueError, match=r"executor:='threads': use one of \['multi', 'single'\]"):
        Graph({'executor': 'threads'})


def test_graph_node_selection():
    _, _, names = resolve({'nodes': 'backprojection_node,executor_node'})
    assert names == ['backprojection_node', 'executor_node']
    _, _, names = resolve({'nodes': ['vlm_node', 'camera_node', 'sim_node']})
    assert names == ['sim_node', 'camera_node', 'vlm_node']          # graph order
    with pytest.raises(ValueError, match=r"unknown nodes \['executor'\]"):
        resolve({'nodes': 'backprojection_node,executor'})
    # The sim camera and the oracle use the sim node's world in-process: no split.
    with pytest.raises(ValueError, match=r'all of \[.sim_node., .camera_node., .vlm_node.\]'):
        resolve({'nodes': 'sim_node,camera_node'})
    with pytest.raises(ValueError, match='all of'):
        resolve({'nodes': 'vlm_node'})
    # Without the oracle the vlm node may run anywhere; without the sim there is no sim_node.
    _, _, names = resolve({'nodes': 'vlm_node', 'vlm_backend': 'transformers'})
    assert names == ['vlm_node']
    with pytest.raises(ValueError, match='does not run'):
        resolve({'nodes': 'sim_node', 'camera_backend': 'realsense'})


def test_declared_parameters_match_the_node_and_overrides():
    from bopask_ros.executor_node import DEFAULTS
    from bopask_ros.graph import declared_parameters
    files, overrides, _ = resolve({'executor_node.lift_height': 0.2})
    p = declared_parameters('executor_node', files, overrides)
    assert set(p) == set(DEFAULTS)          # only what the node declares
    assert p['lift_height'] == 0.2
    yaml_p = rc.load_node_parameters(files[0], 'executor_node')
    assert p['workspace_max'] == yaml_p['workspace_max']
    bp = declared_parameters('backprojection_node', files, overrides)
    assert bp['extrinsic.translation'] == \
        rc.load_node_parameters(files[1], 'backprojection_node')['extrinsic.translation']


def test_child_arguments_read_back_unchanged():
    from bopask_ros.graph_process import format_assignments
    args = {'sim_node.real_time_factor': 2.0, 'vlm_backend': 'oracle', 'a': True, 'b': '1',
            'c': '', 'd': [0.1, 2], 'e': 'true', 'f': 'x: y', 'nodes': 'a,b', 'g': 3}
    assert parse_assignments(format_assignments(args)) == args


def test_bad_yaml_names_the_file(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('vlm_node:\n  backend: oracle\n')
    with pytest.raises(ValueError, match=r"bad.yaml \[key 'vlm_node'\]: needs a ros__param"):
        rc.load_node_parameters(bad, 'vlm_node')


def test_command_cli_without_a_graph_fails_clearly(capsys):
    from bopask_ros import command
    os.environ['ROS_DOMAIN_ID'] = str(20 + (os.getpid() + 17) % 70)
    args = argparse.Namespace(text='pick up the mug and put it next to the bowl', wait=0.0,
                              discovery_timeout=0.5)
    assert command.run(args) == 1
    assert 'nothing subscribes to /bopask/command' in capsys.readouterr().err
    assert command.run(argparse.Namespace(text='  ', wait=0.0, discovery_timeout=0.5)) == 2


def _bopask(*args, timeout=60):
    import subprocess
    import sys
    env = dict(os.environ, ROS_DOMAIN_ID=str(20 + (os.getpid() + 53) % 70))
    # The ros-* wheels' .pth re-executes Python with LD_LIBRARY_PATH set: run the console
    # script's module with this interpreter and let it do so.
    return subprocess.run([sys.executable, '-m', 'bopask_ros.cli', *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_bopask_launch_starts_the_graph_and_refuses_bad_arguments():
    bad = _bopask('launch', 'pick_place', 'camera_backend=sim')
    assert bad.returncode == 2 and 'not name:=value' in bad.stdout
    ok = _bopask('launch', '--duration', '2', 'pick_place', 'sim_node.n_objects_max:=3')
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ('running sim_node, camera_node, vlm_node, backprojection_node, executor_node'
            in ok.stdout)
