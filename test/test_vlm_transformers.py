"""The transformers backend on a tiny Qwen2.5-VL built locally (no download).

An untrained model's answer is not a grasp: the vlm core refuses it.
"""

import numpy as np
import pytest

from bopask_gen.core.errors import AnswerParseError
from bopask_ros.vlm import ask, KeypointError, parse_command


@pytest.fixture(scope='module')
def tiny_model_dir(tmp_path_factory):
    from bopask_gen.learn.tiny_model import build_tiny_qwen_vl
    return build_tiny_qwen_vl(tmp_path_factory.mktemp('tiny_vlm'))


def test_local_model_answers_and_bad_text_is_refused(tiny_model_dir):
    from bopask_ros.vlm_transformers import TransformersBackend
    backend = TransformersBackend(str(tiny_model_dir), device='cpu', max_new_tokens=12)
    assert next(backend.model.parameters()).dtype.is_floating_point
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    text = backend.answer(image, 'How can I grasp the mug?', {})
    assert isinstance(text, str)
    # A random model's text is not a 5-point grasp: the vlm core refuses it.
    with pytest.raises((AnswerParseError, KeypointError)):
        ask(backend, image, parse_command('put the mug next to the bowl'), 'pixel')


def test_missing_model_folder_is_a_clear_error(tmp_path):
    from bopask_gen.learn.model_loading import ModelLoadError
    from bopask_ros.vlm_transformers import TransformersBackend
    with pytest.raises(ModelLoadError, match='not found'):
        TransformersBackend(str(tmp_path / 'nope'))
    with pytest.raises(ModelLoadError, match='model_path'):
        TransformersBackend('')
