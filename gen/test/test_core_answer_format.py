import numpy as np
import pytest

from bopask_gen.core.answer_format import (
    format_points,
    format_yes_no,
    NO_POINTS_TEXT,
    parse_points,
    parse_yes_no,
)
from bopask_gen.core.errors import AnswerParseError

W, H = 640, 480
POINTS = np.array([[412.3, 238.6], [10.0, 470.2], [639.0, 0.0]])


@pytest.mark.parametrize('coords,tol', [('pixel', 0.5), ('norm', 0.5 * 640 / 1000 + 1e-9),
                                        ('norm1000', 0.5 * 640 / 1000 + 1e-9)])
def test_format_then_parse_round_trips(coords, tol):
    text = format_points(POINTS, coords, W, H)
    assert text.startswith('[(') and text.endswith(')]')
    back = parse_points(text, coords, W, H, expected=3)
    assert np.max(np.abs(back - POINTS)) <= tol


def test_formats_look_as_documented():
    assert format_points([[320, 240]], 'pixel', W, H) == '[(320, 240)]'
    assert format_points([[320, 240]], 'norm', W, H) == '[(0.500, 0.500)]'
    assert format_points([[320, 240]], 'norm1000', W, H) == '[(500, 500)]'


def test_parses_other_models_point_syntaxes():
    molmo = 'Here: <point x="50.0" y="25.0" alt="cup">cup</point>'
    np.testing.assert_allclose(parse_points(molmo, 'pixel', W, H), [[320, 120]])
    molmo_multi = '<points x1="10" y1="20" x2="50" y2="50" alt="a">a</points>'
    np.testing.assert_allclose(parse_points(molmo_multi, 'pixel', W, H),
                               [[64, 96], [320, 240]])
    gemini = '```json\n[{"point": [250, 500], "label": "cup"}]\n```'
    np.testing.assert_allclose(parse_points(gemini, 'pixel', W, H), [[320, 120]])
    listy = 'The points are [[100, 200], [300.5, 400]].'
    np.testing.assert_allclose(parse_points(listy, 'pixel', W, H), [[100, 200], [300.5, 400]])


def test_none_answer_and_garbage():
    assert parse_points(NO_POINTS_TEXT, 'pixel', W, H).shape == (0, 2)
    assert format_points(np.zeros((0, 2)), 'norm', W, H) == NO_POINTS_TEXT
    with pytest.raises(AnswerParseError):
        parse_points('I would grab it gently.', 'pixel', W, H)
    with pytest.raises(AnswerParseError, match='expected 5 points'):
        parse_points('[(1, 2), (3, 4)]', 'pixel', W, H, expected=5)
    with pytest.raises(ValueError, match='unknown coordinate format'):
        parse_points('[(1, 2)]', 'percent', W, H)


def test_yes_no():
    assert parse_yes_no(format_yes_no(True)) is True
    assert parse_yes_no('No.') is False
    assert parse_yes_no('Answer: yes, it is') is True
    with pytest.raises(AnswerParseError):
        parse_yes_no('maybe')
