r"""Pick and place from language commands: camera, VLM, back-projection and executor nodes.

Standard ROS 2 launch file (needs a ROS install with launch_ros; without ROS use
``bopask launch pick_place`` which starts the same nodes with the same YAML)::

    ros2 launch bopask_ros pick_place.launch.py camera_backend:=realsense \\
        vlm_backend:=transformers model_path:=/models/qwen2.5-vl-3b-bopask \\
        executor_backend:=moveit

With ``camera_backend:=sim`` the MuJoCo world is the robot and the camera; the sim node,
the sim camera and the oracle share that world in-process, so the whole graph runs as one
process (the ``bopask_graph`` executable) with the same parameters.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = 'bopask_ros'


def _nodes(context):
    share = get_package_share_directory(PACKAGE)
    config = LaunchConfiguration('config').perform(context) or \
        os.path.join(share, 'config', 'pick_place.yaml')
    extrinsics = os.path.join(share, 'config', 'extrinsics.yaml')
    camera = LaunchConfiguration('camera_backend').perform(context)
    vlm = LaunchConfiguration('vlm_backend').perform(context)
    model_path = LaunchConfiguration('model_path').perform(context)
    executor = LaunchConfiguration('executor_backend').perform(context)
    if camera == 'sim':
        return [Node(package=PACKAGE, executable='bopask_graph', name='bopask_graph',
                     output='screen',
                     arguments=[f'config:={config}', 'camera_backend:=sim',
                                f'vlm_backend:={vlm}', f'model_path:={model_path}',
                                f'executor_backend:={executor}'])]
    files = [config, extrinsics]
    return [
        Node(package=PACKAGE, executable='camera_node', name='camera_node', output='screen',
             parameters=files + [{'backend': camera}]),
        Node(package=PACKAGE, executable='vlm_node', name='vlm_node', output='screen',
             parameters=files + [{'backend': vlm, 'model_path': model_path}]),
        Node(package=PACKAGE, executable='backprojection_node', name='backprojection_node',
             output='screen', parameters=files),
        Node(package=PACKAGE, executable='executor_node', name='executor_node',
             output='screen', parameters=files + [{'backend': executor}]),
    ]


def generate_launch_description():
    """Launch arguments: camera/vlm/executor backends, model path, parameter file."""
    return LaunchDescription([
        DeclareLaunchArgument('camera_backend', default_value='realsense',
                              description='realsense | sim'),
        DeclareLaunchArgument('vlm_backend', default_value='transformers',
                              description='transformers | oracle (sim only) | scripted'),
        DeclareLaunchArgument('model_path', default_value='',
                              description='local Hugging Face VLM directory (transformers)'),
        DeclareLaunchArgument('executor_backend', default_value='moveit',
                              description='moveit (moveit_py) | ik (mink)'),
        DeclareLaunchArgument('config', default_value='',
                              description='parameter YAML (default: config/pick_place.yaml)'),
        OpaqueFunction(function=_nodes),
    ])
