"""Question and answer text of the six BOP-ASK tasks.

The prompt builders here are public so that the online VLM node asks exactly what the
training data asked: ``grasp_question('mustard bottle')``,
``trajectory_question('mustard bottle', 'soup can')``. Each prompt is a question from a
varied template (a random one with an ``rng``, the first one without) followed by a short
hint at the expected answer format and coordinate system. ``human_message`` adds the
``<image>`` token of LLaVA/ShareGPT conversations.

Repeated instances of one name in an image are told apart with position words computed
from world-frame centres (x right, y away from the camera, z up): "the leftmost butter box",
"the mug second from the top".
"""

from collections import defaultdict

import numpy as np

from bopask_gen.core.answer_format import (
    check_coords,
    format_points,
    format_yes_no,
    NO_POINTS_TEXT,
)

TASKS = ('pose', 'grasp', 'trajectory', 'rearrangement', 'spatial', 'depth')
SINGLE_OBJECT_TASKS = ('pose', 'grasp', 'rearrangement')
PAIR_TASKS = ('trajectory', 'spatial', 'depth')
SPATIAL_RELATIONS = ('left', 'right', 'front', 'behind', 'above', 'below')
DEPTH_RELATIONS = ('closer', 'farther')
OPPOSITE = {'left': 'right', 'right': 'left', 'front': 'behind', 'behind': 'front',
            'above': 'below', 'below': 'above', 'closer': 'farther', 'farther': 'closer'}
POINT_COUNTS = {'pose': 8, 'grasp': 5}
# Number of points a keypoint answer must have (absent: any number).

_ARTICLES = ('the ', 'a ', 'an ', 'this ', 'that ')

TEMPLATES = {
    'pose': (
        'Locate the cuboid corners of {obj}.',
        'Where are the 8 corners of the 3D bounding box of {obj}?',
        'Mark the corners of the cuboid that encloses {obj}.',
        'Give the projected 3D bounding box corners of {obj}.',
    ),
    'grasp': (
        'How can I grasp {obj}?',
        'Show a parallel-jaw grasp for {obj}.',
        'Where should the gripper grasp {obj}?',
        'Give a grasp that picks up {obj}.',
    ),
    'trajectory': (
        'Show me how to move {a} to the location of {b}.',
        'Draw a collision-free path that moves {a} to {b}.',
        'What path should {a} follow to reach {b}?',
        'Plan a trajectory that carries {a} over to {b}.',
    ),
    'rearrangement': (
        'Which objects do you move first to grab {obj}?',
        'What must be moved out of the way before grasping {obj}?',
        'Which objects block every good grasp of {obj}?',
        'To pick up {obj}, which objects have to be moved first?',
    ),
    'spatial': (
        'Is {a} {rel} {b}?',
        'In the scene, is {a} {rel} {b}?',
        'Is it true that {a} is {rel} {b}?',
    ),
    'depth': (
        'Is {a} {rel} {b}?',
        'Is it true that {a} is {rel} {b}?',
        'From where the camera stands, is {a} {rel} {b}?',
    ),
}
RELATION_PHRASES = {
    'left': ('to the left of', 'left of'),
    'right': ('to the right of', 'right of'),
    'front': ('in front of',),
    'behind': ('behind', 'in back of'),
    'above': ('above', 'higher than'),
    'below': ('below', 'lower than'),
    'closer': ('closer to you than', 'closer to the camera than', 'nearer to you than'),
    'farther': ('farther from you than', 'farther from the camera than'),
}
COORD_HINTS = {
    'pixel': 'Coordinates are integer pixels (x to the right, y down).',
    'norm': 'Coordinates are normalized to [0, 1] by the image width and height.',
    'norm1000': 'Coordinates are integers from 0 to 1000, relative to the image width and '
                'height.',
}
ANSWER_HINTS = {
    'pose': 'Answer with 8 points [(x, y), ...]: the bottom face first, counter-clockwise '
            'seen from above, then the top face in the same order.',
    'grasp': 'Answer with 5 points [(x, y), ...]: grasp centre, left finger base, right '
             'finger base, left fingertip, right fingertip.',
    'trajectory': 'Answer with the ordered waypoints [(x, y), ...] from the object to the '
                  'goal.',
    'rearrangement': 'Answer with one point [(x, y), ...] on each object to move, or '
                     f'"{NO_POINTS_TEXT}"',
    'spatial': 'Answer Yes or No.',
    'depth': 'Answer Yes or No.',
}


def refer(name):
    """Return a noun phrase for a name: 'mug' -> 'the mug'; phrases with an article stay."""
    name = str(name).strip()
    if name.lower().startswith(_ARTICLES):
        return name
    return f'the {name}'


def _choose(options, rng):
    if rng is None:
        return options[0]
    return options[int(rng.integers(len(options)))]


def answer_hint(task, coords='pixel'):
    """The format instruction appended to a question of ``task``."""
    if task not in ANSWER_HINTS:
        raise ValueError(f'unknown task {task!r}; tasks are {TASKS}')
    if task in ('spatial', 'depth'):
        return ANSWER_HINTS[task]
    check_coords(coords)
    return f'{ANSWER_HINTS[task]} {COORD_HINTS[coords]}'


def _prompt(task, coords, rng, **fields):
    return f'{_choose(TEMPLATES[task], rng).format(**fields)} {answer_hint(task, coords)}'


def pose_question(name, coords='pixel', rng=None):
    """Prompt asking for the 8 cuboid corners of the object called ``name``."""
    return _prompt('pose', coords, rng, obj=refer(name))


def grasp_question(name, coords='pixel', rng=None):
    """Prompt asking for a 5-keypoint parallel-jaw grasp of ``name``."""
    return _prompt('grasp', coords, rng, obj=refer(name))


def trajectory_question(name_a, name_b, coords='pixel', rng=None):
    """Prompt asking for waypoints that move object ``name_a`` to object ``name_b``."""
    return _prompt('trajectory', coords, rng, a=refer(name_a), b=refer(name_b))


def rearrangement_question(name, coords='pixel', rng=None):
    """Prompt asking which objects to move before ``name`` can be grasped."""
    return _prompt('rearrangement', coords, rng, obj=refer(name))


def spatial_question(name_a, name_b, relation, rng=None):
    """Return a Yes/No prompt: is ``name_a`` <relation> ``name_b`` (left, right, ...)."""
    if relation not in SPATIAL_RELATIONS:
        raise ValueError(f'unknown spatial relation {relation!r}; use {SPATIAL_RELATIONS}')
    return _prompt('spatial', None, rng, a=refer(name_a), b=refer(name_b),
                   rel=_choose(RELATION_PHRASES[relation], rng))


def depth_question(name_a, name_b, relation, rng=None):
    """Return a Yes/No prompt: is ``name_a`` closer to/farther from the camera than ``name_b``."""
    if relation not in DEPTH_RELATIONS:
        raise ValueError(f'unknown depth relation {relation!r}; use {DEPTH_RELATIONS}')
    return _prompt('depth', None, rng, a=refer(name_a), b=refer(name_b),
                   rel=_choose(RELATION_PHRASES[relation], rng))


def human_message(prompt):
    """The human turn of a LLaVA/ShareGPT conversation: the image token, then the prompt."""
    return f'<image>\n{prompt}'


def answer_text(task, target, coords, width, height):
    """The model's answer text for a record's pixel ``target`` in ``coords``."""
    if task in ('spatial', 'depth'):
        return format_yes_no(bool(target['answer']))
    if task not in TASKS:
        raise ValueError(f'unknown task {task!r}; tasks are {TASKS}')
    points = np.asarray(target['points'], dtype=float).reshape(-1, 2)
    return format_points(points, coords, width, height)


def conversation(prompt, answer):
    """A two-turn ShareGPT conversation list."""
    return [{'from': 'human', 'value': human_message(prompt)},
            {'from': 'gpt', 'value': answer}]


# --- telling repeated instances apart ------------------------------------------------------

_ORDINALS = ('', 'second', 'third', 'fourth', 'fifth', 'sixth', 'seventh', 'eighth')
# (world axis, extreme word at the low end, at the high end, side words low/high)
_AXES = (
    (0, 'leftmost', 'rightmost', 'left', 'right'),
    (2, 'bottommost', 'topmost', 'bottom', 'top'),
    (1, 'frontmost', 'rearmost', 'front', 'back'),
)


def _position_phrases(values, margin, axis_words):
    """Phrases for instances ordered along one axis, or None if two are closer than margin."""
    order = np.argsort(values, kind='stable')
    if np.any(np.diff(np.asarray(values)[order]) <= margin):
        return None
    _, low_word, high_word, low_side, high_side = axis_words
    n = len(values)
    phrases = [None] * n
    for rank, idx in enumerate(order):
        from_high = n - 1 - rank
        if rank == 0:
            phrases[idx] = ('adj', low_word)
        elif from_high == 0:
            phrases[idx] = ('adj', high_word)
        elif rank <= from_high and rank < len(_ORDINALS):
            phrases[idx] = ('post', f'{_ORDINALS[rank]} from the {low_side}')
        elif from_high < len(_ORDINALS):
            phrases[idx] = ('post', f'{_ORDINALS[from_high]} from the {high_side}')
        else:
            return None
    return phrases


def referring_expressions(entries, margin=0.03):
    """Name every instance unambiguously, using position words for repeated names.

    ``entries``: list of ``(key, name, centre_world)`` (centre (3,), metres, world frame:
    x right, y away from the camera, z up). Returns ``{key: phrase or None}``: 'the mug' for a
    unique name, 'the leftmost mug' / 'the mug second from the left' for repeats separated
    by more than ``margin`` along x (else z, else y); None when no axis separates them (the
    instance cannot be named without ambiguity and gets no question).
    """
    groups = defaultdict(list)
    for key, name, centre in entries:
        groups[name.strip().lower()].append((key, name, np.asarray(centre, dtype=float)))
    result = {}
    for members in groups.values():
        if len(members) == 1:
            key, name, _ = members[0]
            result[key] = refer(name)
            continue
        name = members[0][1]
        for axis_words in _AXES:
            values = [m[2][axis_words[0]] for m in members]
            phrases = _position_phrases(values, margin, axis_words)
            if phrases is not None:
                break
        for (key, _, _), phrase in zip(members, phrases or [None] * len(members)):
            if phrase is None:
                result[key] = None
            elif phrase[0] == 'adj':
                result[key] = f'the {phrase[1]} {name}'
            else:
                result[key] = f'the {name} {phrase[1]}'
    return result
