"""Text formats of BOP-ASK answers: writing them (generator) and reading them (nodes, eval).

Keypoint answers are lists of 2D image points. Three coordinate systems, chosen by a flag:

- ``pixel``: integer pixels, ``[(412, 538), (100, 20)]``
- ``norm``: normalized to [0, 1] by the image size, RoboPoint style, ``[(0.644, 0.538)]``
- ``norm1000``: integers in 0-1000, ``[(644, 538)]``

Pixel and 0-1000 texts look alike, so the parser is told which one the model was trained
with. It also reads the point formats of other models: Molmo (``<point x="61.5" y="40.4">``,
percentages) and Gemini (``[{"point": [y, x], "label": ...}]``, 0-1000, y first).
A rearrangement answer with nothing to move is the text ``NO_POINTS_TEXT``.
"""

import json
import re

import numpy as np

from bopask_gen.core.errors import AnswerParseError

COORD_FORMATS = ('pixel', 'norm', 'norm1000')
NO_POINTS_TEXT = 'None: nothing needs to be moved.'
YES_TEXT = 'Yes'
NO_TEXT = 'No'

_NUMBER = r'[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?'
_PAIR = re.compile(rf'[\(\[]\s*({_NUMBER})\s*,\s*({_NUMBER})\s*[\)\]]')
_MOLMO_POINT = re.compile(rf'<point\s+x="({_NUMBER})"\s+y="({_NUMBER})"', re.IGNORECASE)
_MOLMO_POINTS = re.compile(r'<points\s+([^>]*)>', re.IGNORECASE)
_MOLMO_ATTR = re.compile(rf'([xy])(\d+)="({_NUMBER})"', re.IGNORECASE)
_NONE_WORDS = re.compile(r'^\s*(none|nothing|no object|no objects|no need)\b', re.IGNORECASE)


def check_coords(coords):
    """Raise ValueError for an unknown coordinate format name."""
    if coords not in COORD_FORMATS:
        raise ValueError(f'unknown coordinate format {coords!r}; use one of {COORD_FORMATS}')


def pixels_to_coords(points_px, coords, width, height):
    """Convert (N, 2) pixels to the numbers written for ``coords`` (float array)."""
    check_coords(coords)
    pts = np.asarray(points_px, dtype=float).reshape(-1, 2)
    if coords == 'pixel':
        return pts.copy()
    scale = np.array([width, height], dtype=float)
    if coords == 'norm':
        return pts / scale
    return pts / scale * 1000.0


def coords_to_pixels(values, coords, width, height):
    """Convert (N, 2) numbers of ``coords`` back to pixels (float array)."""
    check_coords(coords)
    vals = np.asarray(values, dtype=float).reshape(-1, 2)
    if coords == 'pixel':
        return vals.copy()
    scale = np.array([width, height], dtype=float)
    if coords == 'norm':
        return vals * scale
    return vals / 1000.0 * scale


def format_points(points_px, coords, width, height):
    """Write (N, 2) pixel points as answer text in ``coords``; N = 0 gives NO_POINTS_TEXT."""
    vals = pixels_to_coords(points_px, coords, width, height)
    if len(vals) == 0:
        return NO_POINTS_TEXT
    if coords == 'norm':
        items = [f'({u:.3f}, {v:.3f})' for u, v in vals]
    else:
        items = [f'({int(round(u))}, {int(round(v))})' for u, v in vals]
    return '[' + ', '.join(items) + ']'


def format_yes_no(answer):
    """Write a boolean answer as 'Yes' or 'No'."""
    return YES_TEXT if answer else NO_TEXT


def parse_yes_no(text):
    """Read 'Yes'/'No' (any case, punctuation, leading words like 'Answer:'); else raise."""
    words = re.findall(r'[a-z]+', str(text).lower())
    for word in words:
        if word in ('yes', 'true'):
            return True
        if word in ('no', 'false'):
            return False
    raise AnswerParseError(f'no Yes/No answer in {text!r}')


def _parse_molmo(text, width, height):
    single = _MOLMO_POINT.findall(text)
    if single:
        return np.array([[float(x), float(y)] for x, y in single]) / 100.0 * [width, height]
    block = _MOLMO_POINTS.search(text)
    if not block:
        return None
    attrs = {}
    for axis, idx, value in _MOLMO_ATTR.findall(block.group(1)):
        attrs.setdefault(int(idx), {})[axis.lower()] = float(value)
    pts = [[a['x'], a['y']] for _, a in sorted(attrs.items()) if 'x' in a and 'y' in a]
    return np.array(pts).reshape(-1, 2) / 100.0 * [width, height]


def _parse_gemini(text, width, height):
    start = text.find('[')
    if start < 0 or '"point"' not in text:
        return None
    try:
        items = json.loads(text[start:text.rfind(']') + 1])
    except json.JSONDecodeError:
        return None
    if isinstance(items, dict):
        items = [items]
    pts = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get('point'), list) and \
                len(item['point']) == 2:
            y, x = item['point']
            pts.append([float(x) / 1000.0 * width, float(y) / 1000.0 * height])
    return np.array(pts).reshape(-1, 2) if pts else None


def parse_points(text, coords, width, height, expected=None):
    """Read a keypoint answer and return (N, 2) pixel coordinates.

    ``coords`` is the format the model was trained with (it decides how bare number pairs
    are read); Molmo and Gemini point syntaxes are recognised by their shape. ``expected``
    (an int) makes any other number of points an error. A rearrangement 'None' answer gives
    an empty (0, 2) array. Raises AnswerParseError on text with no points.
    """
    check_coords(coords)
    text = str(text)
    for parser in (_parse_molmo, _parse_gemini):
        pts = parser(text, width, height)
        if pts is not None and len(pts):
            return _check_count(pts, expected, text)
    pairs = _PAIR.findall(text)
    if pairs:
        pts = coords_to_pixels([[float(a), float(b)] for a, b in pairs], coords, width, height)
        return _check_count(pts, expected, text)
    if _NONE_WORDS.search(text) and expected in (None, 0):
        return np.zeros((0, 2))
    raise AnswerParseError(f'no points in {text[:200]!r}')


def _check_count(pts, expected, text):
    if not np.all(np.isfinite(pts)):
        raise AnswerParseError(f'non-finite coordinates in {text[:200]!r}')
    if expected is not None and len(pts) != expected:
        raise AnswerParseError(f'expected {expected} points, got {len(pts)} in {text[:200]!r}')
    return pts
