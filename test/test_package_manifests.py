"""Both ament_python packages declare what a ROS 2 install needs to find them."""

from pathlib import Path
import xml.etree.ElementTree as ET

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('pkg_dir,name', [(REPO, 'bopask_ros'), (REPO / 'gen', 'bopask_gen')])
def test_package_xml_format3_and_ament_python(pkg_dir, name):
    root = ET.parse(pkg_dir / 'package.xml').getroot()
    assert root.tag == 'package' and root.get('format') == '3'
    assert root.findtext('name') == name
    assert root.find('export/build_type').text == 'ament_python'
    assert (pkg_dir / 'resource' / name).is_file()
    assert (pkg_dir / name / '__init__.py').is_file()
    assert (pkg_dir / 'setup.cfg').is_file()


def test_ros_package_depends_on_message_packages():
    root = ET.parse(REPO / 'package.xml').getroot()
    deps = {e.text for e in root.iter() if e.tag.endswith('depend')}
    for dep in ('rclpy', 'std_msgs', 'sensor_msgs', 'geometry_msgs', 'visualization_msgs',
                'trajectory_msgs', 'bopask_gen'):
        assert dep in deps


def test_torch_is_pinned_to_cpu_build_once():
    lines = [ln for ln in (REPO / 'requirements.txt').read_text().splitlines()
             if ln and not ln.startswith('#')]
    assert 'torch==2.13.0' in lines
    assert not any(ln.startswith('torchvision') for ln in lines)
    names = [ln.split('==')[0].lower() for ln in lines]
    assert len(names) == len(set(names))
    assert all('==' in ln for ln in lines)
