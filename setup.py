"""Install bopask_ros (ament_python; also plain pip)."""

from glob import glob
import sys

from setuptools import find_packages, setup

package_name = 'bopask_ros'

# `ros2 run bopask_ros <node>`: colcon installs with `setup.py install/develop`, and setup.cfg
# puts scripts in lib/bopask_ros. pip builds wheels instead and gets only the `bopask`
# command (without ROS, nodes start through `bopask launch`). One line per node module.
NODE_MODULES = ('camera_node', 'vlm_node', 'backprojection_node', 'executor_node', 'sim_node',
                'bopask_graph')
node_scripts = []
if {'install', 'develop'} & set(sys.argv[1:]):
    node_scripts = [f'{name} = bopask_ros.{name}:main' for name in NODE_MODULES]

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'gen', 'gen.*', 'bench', 'docker']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='bopask developers',
    maintainer_email='dev@bopask.invalid',
    description='BOP-ASK robot stack: language commands to grasps through a VLM.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'bopask = bopask_ros.cli:main',
        ] + node_scripts,
    },
)
