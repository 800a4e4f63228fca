"""VLM node core: commands, the generator's prompts, answer parsing in all coordinate formats."""

import numpy as np
import pytest

from bopask_gen.core.answer_format import format_points
from bopask_gen.core.errors import AnswerParseError
from bopask_ros.vlm import (
    ask,
    CommandError,
    decode_grasp,
    decode_waypoints,
    draw_overlay,
    KeypointError,
    parse_command,
    ScriptedBackend,
)

GRASP = np.array([[320, 240], [300, 200], [340, 200], [300, 240], [340, 240]], dtype=float)


@pytest.mark.parametrize('text,obj,target', [
    ('pick up the mustard bottle and put it next to the soup can', 'mustard bottle',
     'soup can'),
    ('Pick up the foam brick and place it near the mug.', 'foam brick', 'mug'),
    ('grab a banana and put it down beside the bowl', 'banana', 'bowl'),
    ('put the tomato soup can next to the sugar box', 'tomato soup can', 'sugar box'),
    ('move the mug to the cracker box', 'mug', 'cracker box'),
])
def test_parse_command(text, obj, target):
    cmd = parse_command(text)
    assert (cmd.object_name, cmd.target_name) == (obj, target)


@pytest.mark.parametrize('text', ['', 'dance', 'pick up the mug'])
def test_unreadable_command_is_refused(text):
    with pytest.raises(CommandError):
        parse_command(text)


@pytest.mark.parametrize('coords', ['pixel', 'norm', 'norm1000'])
def test_decode_all_coordinate_formats(coords):
    text = format_points(GRASP, coords, 640, 480)
    np.testing.assert_allclose(decode_grasp(text, coords, 640, 480), GRASP, atol=1.0)
    wps = decode_waypoints(format_points(GRASP[:3], coords, 640, 480), coords, 640, 480)
    assert wps.shape == (3, 2)


def test_unparseable_and_out_of_image_answers():
    with pytest.raises(AnswerParseError):
        decode_grasp('I would grasp it by the handle.', 'pixel', 640, 480)
    with pytest.raises(AnswerParseError, match='expected 5 points'):
        decode_grasp('[(1, 2), (3, 4)]', 'pixel', 640, 480)
    outside = GRASP.copy()
    outside[2] = [700, 100]
    with pytest.raises(KeypointError, match='grasp keypoint 2 .* outside the 640x480'):
        decode_grasp(format_points(outside, 'pixel', 640, 480), 'pixel', 640, 480)
    with pytest.raises(AnswerParseError, match='at least 2 waypoints'):
        decode_waypoints('[(10, 10)]', 'pixel', 640, 480)


def test_ask_uses_the_generator_prompts_and_parser():
    seen = []

    class Recorder(ScriptedBackend):
        def answer(self, image_rgb, question, request):
            seen.append((question, request['task']))
            return super().answer(image_rgb, question, request)

    backend = Recorder([format_points(GRASP, 'norm', 640, 480), '[(0.5, 0.5), (0.6, 0.4)]'])
    image = np.zeros((480, 640, 3), np.uint8)
    answer = ask(backend, image, parse_command('put the mug next to the bowl'), 'norm')
    assert seen[0] == ('How can I grasp the mug? Answer with 5 points [(x, y), ...]: grasp '
                       'centre, left finger base, right finger base, left fingertip, right '
                       'fingertip. Coordinates are normalized to [0, 1] by the image width '
                       'and height.', 'grasp')
    assert seen[1][0].startswith('Show me how to move the mug to the location of the bowl.')
    np.testing.assert_allclose(answer.grasp_px, GRASP, atol=1.0)
    np.testing.assert_allclose(answer.waypoints_px, [[320, 240], [384, 192]])
    overlay = draw_overlay(image, answer.grasp_px, answer.waypoints_px, 'caption')
    assert overlay.shape == image.shape and overlay.any()


def test_scripted_backend_needs_answers():
    with pytest.raises(ValueError, match='scripted_answers'):
        ScriptedBackend([])


def test_oracle_refuses_objects_the_generator_would_not_ask_about():
    from types import SimpleNamespace

    from bopask_ros.vlm_oracle import OracleBackend, OracleError
    objs = [SimpleNamespace(gt_index=0, obj_id=13, visib_fract=0.05),    # bowl, hidden
            SimpleNamespace(gt_index=1, obj_id=5, visib_fract=0.9)]      # mustard bottle
    scene = SimpleNamespace(objects=objs, object_by_gt=lambda i: objs[i])
    oracle = OracleBackend(runtime=None)
    assert oracle._object(scene, 'mustard bottle').gt_index == 1
    with pytest.raises(OracleError, match=r"'bowl' is 5% visible"):
        oracle._object(scene, 'bowl')


def test_oracle_answers_the_best_scored_of_the_nearly_least_tilted_grasps():
    from bopask_ros.vlm_oracle import choose_grasp, OracleError
    deg = np.deg2rad
    # Score order: a 4 degree grasp near the centre of mass before a 0.5 degree one off it.
    assert choose_grasp(deg([4.0, 0.5, 30.0]), deg(60.0)) == 0
    # A 30 degree grasp first: the upright one further down the list wins.
    assert choose_grasp(deg([30.0, 12.0, 2.0]), deg(60.0)) == 2
    with pytest.raises(OracleError, match='least tilt 70 deg > 60 deg'):
        choose_grasp(deg([80.0, 70.0]), deg(60.0))
