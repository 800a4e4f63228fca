"""Install bopask_gen (ament_python; also plain pip)."""

import sys

from setuptools import find_packages, setup

package_name = 'bopask_gen'

# `ros2 run bopask_gen build ...`: colcon installs with `setup.py install/develop`, and
# setup.cfg puts scripts in lib/bopask_gen. pip builds wheels instead; it gets only the
# `bopask-gen` command, so a venv's bin/ is not filled with names like `build` and `eval`.
ROS_RUN_COMMANDS = ('build', 'viz', 'synth', 'grasp-check', 'finetune', 'predict', 'eval')
ros_run_scripts = []
if {'install', 'develop'} & set(sys.argv[1:]):
    ros_run_scripts = [f"{name} = bopask_gen.cli:{name.replace('-', '_')}_main"
                       for name in ROS_RUN_COMMANDS]

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['data/*', 'data/**/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='bopask developers',
    maintainer_email='dev@bopask.invalid',
    description='BOP-ASK dataset generation, synthetic scenes, fine-tuning and evaluation.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'bopask-gen = bopask_gen.cli:main',
        ] + ros_run_scripts,
    },
)
