"""Language command -> VLM questions -> parsed 2D keypoints (the core of the vlm node).

A pick-and-place command names an object and a target ("pick up the mustard bottle and put
it next to the soup can"). The node asks the model two BOP-ASK questions about the latest
image: a grasp question (answer: 5 grasp keypoints) and a trajectory question (answer:
waypoints from the object to the target). The answers are model *text*, read back with
``core.answer_format.parse_points`` in the coordinate format the model was trained with.

Backends implement ``answer(image_rgb, question, request) -> str``:

- ``transformers``: a local Hugging Face VLM directory (``vlm_transformers.py``).
- ``oracle``: the simulator's ground truth through the generator's annotators
  (``vlm_oracle.py``); it exercises everything but the model and is logged as ``oracle``.
- ``scripted``: answers taken verbatim from a parameter, in order (replaying recorded model
  output, and driving the refusal paths in tests).
"""

from dataclasses import dataclass, field
import re
import time

import numpy as np

from bopask_gen.core.answer_format import parse_points
from bopask_gen.core.camera import pixels_inside
from bopask_gen.core.errors import AnswerParseError
from bopask_gen.generator.questions import grasp_question, trajectory_question

GRASP_KEYPOINTS = 5

_ARTICLE = r'(?:the\s+|a\s+|an\s+|my\s+)?'
_RELATION = r'(?:next\s+to|near|beside|by|close\s+to|to|towards|toward|onto|on|at)'
_COMMAND_PATTERNS = [
    re.compile(rf'^(?:please\s+)?(?:pick\s+up|grab|take|grasp|lift)\s+{_ARTICLE}(?P<obj>.+?)\s+'
               rf'and\s+(?:put|place|move|set|bring|drop)\s+(?:it\s+)?(?:down\s+)?'
               rf'{_RELATION}\s+{_ARTICLE}(?P<target>.+?)$', re.IGNORECASE),
    re.compile(rf'^(?:please\s+)?(?:put|place|move|bring|set)\s+{_ARTICLE}(?P<obj>.+?)\s+'
               rf'{_RELATION}\s+{_ARTICLE}(?P<target>.+?)$', re.IGNORECASE),
]


class CommandError(ValueError):
    """A language command the node cannot turn into questions."""


class KeypointError(ValueError):
    """Model output that parsed but cannot be used (wrong count, outside the image)."""


@dataclass
class Command:
    """A parsed pick-and-place command."""

    text: str
    object_name: str
    target_name: str


@dataclass
class KeypointAnswer:
    """The parsed answers to one command, in pixels of the image they were asked about."""

    grasp_px: np.ndarray
    waypoints_px: np.ndarray
    texts: dict = field(default_factory=dict)
    inference_ms: float = 0.0


def parse_command(text):
    """Return a Command (object and target names) or raise CommandError."""
    cleaned = ' '.join(str(text).strip().rstrip('.!').split())
    if not cleaned:
        raise CommandError('empty command')
    for pattern in _COMMAND_PATTERNS:
        match = pattern.match(cleaned)
        if match:
            obj, target = match.group('obj').strip(), match.group('target').strip()
            if obj and target:
                return Command(text=cleaned, object_name=obj, target_name=target)
    raise CommandError(
        f'cannot read {cleaned!r} as a pick-and-place command; say e.g. "pick up the '
        f'mustard bottle and put it next to the soup can"')


def decode_grasp(text, coords, width, height):
    """Parse a grasp answer into (5, 2) pixels inside the image, or raise."""
    pts = parse_points(text, coords, width, height, expected=GRASP_KEYPOINTS)
    check_inside(pts, width, height, 'grasp')
    return pts


def decode_waypoints(text, coords, width, height, min_points=2):
    """Parse a trajectory answer into (M, 2) pixels (M >= min_points) inside the image."""
    pts = parse_points(text, coords, width, height)
    if len(pts) < min_points:
        raise AnswerParseError(f'a trajectory needs at least {min_points} waypoints, got '
                               f'{len(pts)} in {str(text)[:200]!r}')
    check_inside(pts, width, height, 'waypoint')
    return pts


def check_inside(points_px, width, height, what):
    """Raise KeypointError naming the first point outside a width x height image."""
    inside = pixels_inside(points_px, width, height)
    if not np.all(inside):
        i = int(np.nonzero(~inside)[0][0])
        u, v = points_px[i]
        raise KeypointError(f'{what} keypoint {i} at ({u:.1f}, {v:.1f}) is outside the '
                            f'{width}x{height} image')


def ask(backend, image_rgb, command, coords, request=None):
    """Ask ``backend`` both questions and return a KeypointAnswer (raises on bad output).

    ``request`` is passed through to the backend (the oracle uses it to know which frame
    the image shows).
    """
    height, width = image_rgb.shape[:2]
    t0 = time.perf_counter()
    request = dict(request or {}, command=command)
    # The generator's own prompt builders: the model is asked exactly what it was trained on.
    request['task'] = 'grasp'
    grasp_text = backend.answer(image_rgb, grasp_question(command.object_name, coords),
                                request)
    request['task'] = 'trajectory'
    traj_text = backend.answer(
        image_rgb, trajectory_question(command.object_name, command.target_name, coords),
        request)
    inference_ms = (time.perf_counter() - t0) * 1000.0
    texts = {'grasp': grasp_text, 'trajectory': traj_text}
    grasp = decode_grasp(grasp_text, coords, width, height)
    waypoints = decode_waypoints(traj_text, coords, width, height)
    return KeypointAnswer(grasp_px=grasp, waypoints_px=waypoints, texts=texts,
                          inference_ms=inference_ms)


class ScriptedBackend:
    """Answers from a fixed list of model texts, in order, cycling (recorded model output)."""

    name = 'scripted'

    def __init__(self, answers):
        if not answers:
            raise ValueError('the scripted backend needs at least one answer text '
                             '(parameter scripted_answers)')
        self._answers = list(answers)
        self._next = 0

    def answer(self, image_rgb, question, request):
        """Return the next scripted answer."""
        text = self._answers[self._next % len(self._answers)]
        self._next += 1
        return text


def draw_overlay(image_rgb, grasp_px=None, waypoints_px=None, caption=None):
    """Return a copy of the image with the grasp (green) and waypoints (orange) drawn."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(image_rgb[:, :, :3]).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    if waypoints_px is not None and len(waypoints_px):
        pts = [tuple(map(float, p)) for p in waypoints_px]
        if len(pts) > 1:
            draw.line(pts, fill=(255, 140, 0), width=3)
        for u, v in pts:
            draw.ellipse([u - 4, v - 4, u + 4, v + 4], outline=(255, 140, 0), width=2)
    if grasp_px is not None and len(grasp_px) == GRASP_KEYPOINTS:
        g = [tuple(map(float, p)) for p in grasp_px]
        # left base -> left tip, right base -> right tip, bases joined: the hand's outline.
        draw.line([g[3], g[1], g[2], g[4]], fill=(0, 220, 0), width=3)
        u, v = g[0]
        draw.ellipse([u - 4, v - 4, u + 4, v + 4], fill=(0, 220, 0))
    if caption:
        draw.rectangle([0, 0, img.width, 16], fill=(0, 0, 0))
        draw.text((4, 2), caption[:100], fill=(255, 255, 255))
    return np.asarray(img)
