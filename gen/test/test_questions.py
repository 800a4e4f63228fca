"""Question templates, format hints, answer text and position words."""

import numpy as np
import pytest

from bopask_gen.core.answer_format import COORD_FORMATS, NO_POINTS_TEXT, parse_points
from bopask_gen.generator import questions as q


def test_public_prompt_builders_name_objects_and_the_answer_format():
    text = q.grasp_question('mustard bottle')
    assert text.startswith('How can I grasp the mustard bottle?')
    assert '5 points' in text and 'pixels' in text
    text = q.trajectory_question('mustard bottle', 'the soup can', coords='norm')
    assert 'the mustard bottle' in text and 'the soup can' in text and 'the the' not in text
    assert 'normalized to [0, 1]' in text
    assert '0 to 1000' in q.pose_question('mug', coords='norm1000')
    assert NO_POINTS_TEXT in q.rearrangement_question('mug')
    assert q.spatial_question('mug', 'bowl', 'left').endswith('Answer Yes or No.')
    assert 'closer to you than the bowl' in q.depth_question('mug', 'bowl', 'closer')
    assert q.human_message('x') == '<image>\nx'


def test_templates_vary_with_an_rng():
    rng = np.random.default_rng(1)
    for task, build in [('pose', lambda r: q.pose_question('mug', rng=r)),
                        ('grasp', lambda r: q.grasp_question('mug', rng=r)),
                        ('spatial', lambda r: q.spatial_question('mug', 'bowl', 'above', r))]:
        texts = {build(rng) for _ in range(60)}
        assert len(texts) >= 3, task


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='spatial relation'):
        q.spatial_question('a', 'b', 'closer')
    with pytest.raises(ValueError, match='depth relation'):
        q.depth_question('a', 'b', 'left')
    with pytest.raises(ValueError, match='coordinate format'):
        q.grasp_question('a', coords='percent')
    with pytest.raises(ValueError, match='unknown task'):
        q.answer_hint('dance')


@pytest.mark.parametrize('coords', COORD_FORMATS)
def test_answer_text_parses_back(coords):
    w, h = 640, 480
    pts = np.array([[10.3, 20.7], [639.0, 479.0], [320.5, 0.0]])
    text = q.answer_text('trajectory', {'points': pts.tolist()}, coords, w, h)
    back = parse_points(text, coords, w, h)
    tol = {'pixel': 0.51, 'norm': 0.0005 * w + 1e-9, 'norm1000': 0.5 * w / 1000 + 1e-9}[coords]
    assert np.max(np.abs(back - pts)) <= tol
    assert q.answer_text('rearrangement', {'points': []}, coords, w, h) == NO_POINTS_TEXT
    assert q.answer_text('depth', {'answer': False}, coords, w, h) == 'No'


def test_unique_names_get_an_article_only():
    refs = q.referring_expressions([(0, 'mug', [0, 0, 0]), (1, 'bowl', [0.5, 0, 0])])
    assert refs == {0: 'the mug', 1: 'the bowl'}


def test_repeated_names_get_position_words_along_x():
    entries = [(7, 'butter box', [0.20, 0, 0]), (3, 'butter box', [-0.10, 0, 0]),
               (5, 'butter box', [0.05, 0, 0]), (9, 'mug', [0, 0, 0])]
    refs = q.referring_expressions(entries)
    assert refs[3] == 'the leftmost butter box'
    assert refs[5] == 'the butter box second from the left'
    assert refs[7] == 'the rightmost butter box'
    assert refs[9] == 'the mug'


def test_stacked_instances_use_height_then_depth():
    stacked = [(0, 'box', [0.0, 0.0, 0.02]), (1, 'box', [0.01, 0.0, 0.10])]
    assert q.referring_expressions(stacked) == {0: 'the bottommost box', 1: 'the topmost box'}
    row = [(0, 'can', [0.0, 0.30, 0.0]), (1, 'can', [0.01, 0.10, 0.0])]
    assert q.referring_expressions(row) == {0: 'the rearmost can', 1: 'the frontmost can'}


def test_inseparable_instances_get_no_name():
    same = [(0, 'can', [0.0, 0.0, 0.0]), (1, 'can', [0.01, 0.01, 0.01])]
    assert q.referring_expressions(same) == {0: None, 1: None}
