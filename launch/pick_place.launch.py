r"""Pick and place from language commands: camera, VLM, back-projection and executor nodes.

Standard ROS 2 launch file (needs a ROS install with launch_ros; without ROS use
``bopask launch pick_place`` which starts the same nodes with the same YAML)::

    ros2 launch bopask_ros pick_place.launch.py camera_backend:=realsense \\
        vlm_backend:=transformers model_path:=/models/qwen2.5-vl-3b-bopask \\
        executor_backend:=ik dry_run:=true

``camera_backend:=external`` starts no camera node: realsense-ros (``rs_launch.py`` with
``align_depth.enable:=true``) publishes the same topics. Outside the simulator the camera
extrinsic of ``config/extrinsics.yaml`` is published as a static transform (base frame ->
camera optical frame) unless ``publish_extrinsics:=false`` (e.g. a hand-eye calibration
package publishes it).

With ``camera_backend:=sim`` the MuJoCo world is the robot and the camera; the sim node,
the sim camera and the vlm node (the oracle reads that world in-process) run in one process
(the ``bopask_graph`` executable with ``nodes:=sim_node,camera_node,vlm_node``) with the
same parameters; the back-projection and executor nodes are processes of their own, as on
the robot, so the simulator does not take their CPU (Python's GIL). The static extrinsic is
published as well: the sim camera is mounted at it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = 'bopask_ros'
# The nodes that share the simulator's MuJoCo world in-process (bopask_graph nodes:=...).
SIM_PROCESS_NODES = 'sim_node,camera_node,vlm_node'


def _nodes(context):
    share = get_package_share_directory(PACKAGE)
    config = LaunchConfiguration('config').perform(context) or \
        os.path.join(share, 'config', 'pick_place.yaml')
    extrinsics = os.path.join(share, 'config', 'extrinsics.yaml')
    camera = LaunchConfiguration('camera_backend').perform(context)
    vlm = LaunchConfiguration('vlm_backend').perform(context)
    model_path = LaunchConfiguration('model_path').perform(context)
    executor = LaunchConfiguration('executor_backend').perform(context)
    dry_run = LaunchConfiguration('dry_run').perform(context).lower() == 'true'
    files = [config, extrinsics]
    nodes = [
        Node(package=PACKAGE, executable='backprojection_node', name='backprojection_node',
             output='screen', parameters=files),
        Node(package=PACKAGE, executable='executor_node', name='executor_node',
             output='screen', parameters=files + [{'backend': executor, 'dry_run': dry_run}]),
    ]
    if camera == 'sim':
        # One process holds several nodes: no name= (it would rename all of them).
        nodes.append(Node(package=PACKAGE, executable='bopask_graph', output='screen',
                          arguments=[f'config:={config}', 'camera_backend:=sim',
                                     f'vlm_backend:={vlm}', f'model_path:={model_path}',
                                     f'nodes:={SIM_PROCESS_NODES}']))
    else:
        nodes.append(Node(package=PACKAGE, executable='vlm_node', name='vlm_node',
                          output='screen',
                          parameters=files + [{'backend': vlm, 'model_path': model_path}]))
    if camera not in ('external', 'sim'):
        nodes.append(Node(package=PACKAGE, executable='camera_node', name='camera_node',
                          output='screen', parameters=files + [{'backend': camera}]))
    if LaunchConfiguration('publish_extrinsics').perform(context).lower() == 'true':
        nodes.append(_extrinsics_publisher(extrinsics, config))
    return nodes


def _extrinsics_publisher(extrinsics_file, config_file):
    """Publish config/extrinsics.yaml as the static transform base -> camera optical frame."""
    import yaml

    with open(extrinsics_file) as f:
        ext = yaml.safe_load(f)['/**']['ros__parameters']['extrinsic']
    with open(config_file) as f:
        frames = yaml.safe_load(f)['backprojection_node']['ros__parameters']
    x, y, z = (str(v) for v in ext['translation'])
    qx, qy, qz, qw = (str(v) for v in ext['rotation_xyzw'])
    return Node(package='tf2_ros', executable='static_transform_publisher',
                name='camera_extrinsics', output='screen',
                arguments=['--x', x, '--y', y, '--z', z, '--qx', qx, '--qy', qy, '--qz', qz,
                           '--qw', qw, '--frame-id', frames['base_frame'],
                           '--child-frame-id', frames['camera_frame']])


def generate_launch_description():
    """Launch arguments: backends, model path, parameter file, dry run, extrinsics."""
    return LaunchDescription([
        DeclareLaunchArgument('camera_backend', default_value='realsense',
                              description='realsense | sim | external'),
        DeclareLaunchArgument('vlm_backend', default_value='transformers',
                              description='transformers | oracle (sim only) | scripted'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='local Hugging Face VLM directory (transformers)'),
        DeclareLaunchArgument('executor_backend', default_value='ik',
                              description='ik (mink) | moveit (moveit_py)'),
        DeclareLaunchArgument('dry_run', default_value='false',
                              description='true | false'),
        DeclareLaunchArgument('publish_extrinsics', default_value='true',
                              description='true | false'),
        DeclareLaunchArgument('config', default_value='',
                              description='parameter YAML (default: config/pick_place.yaml)'),
        OpaqueFunction(function=_nodes),
    ])
