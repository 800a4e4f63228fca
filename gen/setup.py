"""Install bopask_gen (ament_python; also plain pip)."""

from setuptools import find_packages, setup

package_name = 'bopask_gen'

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
        ],
    },
)
