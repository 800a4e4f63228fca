"""Load a local vision-language model folder for inference (or training): model + processor.

Three kinds of folder are accepted, all local (``local_files_only``; nothing is downloaded):

- a base model (``config.json`` + weights), e.g. Qwen2.5-VL-3B-Instruct;
- a ``bopask-gen finetune`` output of a full fine-tune, or a merged LoRA (same layout);
- a LoRA adapter folder (``adapter_config.json``): its base model is the
  ``base_model_name_or_path`` of that config (an absolute path, or relative to the adapter
  folder); the adapter is applied with peft and, by default, merged into the weights.

The processor comes from the folder itself when it holds one (finetune saves it), else from
the base model. transformers 5 builds the Qwen2-VL/2.5-VL processor with a video
sub-processor that needs torchvision; where that fails (CPU installs here have no
torchvision), an image-only processor with the same tokenizer, image processor and chat
template is used instead (``ImageOnlyQwenVLProcessor``).

dtype: bfloat16 on a GPU that supports it, float32 on the CPU. ``trust_remote_code`` is off
unless asked for.
"""

import json
import logging
from pathlib import Path

LOG = logging.getLogger(__name__)
_QWEN_TYPES = ('qwen2_vl', 'qwen2_5_vl')


class ModelLoadError(ValueError):
    """A model folder that cannot be loaded (the message says which and why)."""


def check_model_dir(path):
    """Return ``path`` as a Path if it is a local model or adapter folder; else raise."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelLoadError(
            f'{path}: model folder not found. Models are never downloaded: pass a local folder '
            'holding config.json and the weights (e.g. a copy of Qwen2.5-VL-3B-Instruct), a '
            'bopask-gen finetune output, or a LoRA adapter folder')
    if not (path / 'config.json').is_file() and not (path / 'adapter_config.json').is_file():
        raise ModelLoadError(f'{path}: neither config.json nor adapter_config.json found; not a '
                             'transformers model or peft adapter folder')
    return path


def default_device():
    """'cuda' when a GPU is visible, else 'cpu'."""
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def default_dtype(device):
    """bfloat16 on a GPU with bf16 support, float32 otherwise (CPU training/inference)."""
    import torch
    if str(device).startswith('cuda') and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def adapter_base_dir(adapter_dir):
    """Base model folder named by a LoRA adapter's adapter_config.json (checked to exist)."""
    adapter_dir = Path(adapter_dir)
    cfg_path = adapter_dir / 'adapter_config.json'
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f'{cfg_path}: unreadable adapter config ({exc})') from exc
    base = cfg.get('base_model_name_or_path')
    if not base:
        raise ModelLoadError(f'{cfg_path}: key "base_model_name_or_path" missing or empty')
    base_path = Path(base).expanduser()
    if not base_path.is_absolute():
        base_path = (adapter_dir / base_path).resolve()
    if not (base_path / 'config.json').is_file():
        raise ModelLoadError(f'{cfg_path}: base model {base!r} is not a local model folder '
                             f'(looked at {base_path}); nothing is downloaded')
    return base_path


def _model_type(model_dir):
    try:
        return json.loads((Path(model_dir) / 'config.json').read_text()).get('model_type')
    except (OSError, json.JSONDecodeError):
        return None


def _has_processor_files(path):
    return (Path(path) / 'tokenizer_config.json').is_file() or \
        (Path(path) / 'tokenizer.json').is_file()


def image_only_processor_class(model_type):
    """A Qwen-VL processor class without the video sub-processor (which needs torchvision)."""
    from transformers.processing_utils import ProcessorMixin
    if model_type == 'qwen2_vl':
        from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor as Base
    else:
        from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import (
            Qwen2_5_VLProcessor as Base,
        )

    class ImageOnlyQwenVLProcessor(Base):
        """The Qwen-VL processor for images only (same tokens, template and image patches)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, 'image_token', None) or '<|image_pad|>'
            self.video_token = getattr(tokenizer, 'video_token', None) or '<|video_pad|>'
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwenVLProcessor


def _read_chat_template(path, tokenizer):
    path = Path(path)
    if (path / 'chat_template.jinja').is_file():
        return (path / 'chat_template.jinja').read_text()
    if (path / 'chat_template.json').is_file():
        return json.loads((path / 'chat_template.json').read_text()).get('chat_template')
    return getattr(tokenizer, 'chat_template', None)


def load_processor(path, model_type=None, trust_remote_code=False, **image_kwargs):
    """Load the processor of a local folder (see module doc for the image-only fallback).

    ``image_kwargs`` (e.g. ``max_pixels``) override the image processor's settings.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
    path = Path(path)
    model_type = model_type or _model_type(path)
    error = None
    try:
        proc = AutoProcessor.from_pretrained(path, local_files_only=True,
                                             trust_remote_code=trust_remote_code)
        if hasattr(proc, 'image_processor') and hasattr(proc, 'tokenizer'):
            _apply_image_kwargs(proc, image_kwargs)
            return proc
        error = f'AutoProcessor gave a {type(proc).__name__}, not an image-text processor'
    except (ImportError, ValueError, OSError, TypeError, AttributeError, KeyError) as exc:
        error = f'{type(exc).__name__}: {exc}'
    if model_type not in _QWEN_TYPES:
        raise ModelLoadError(f'{path}: cannot load its processor ({error})')
    LOG.debug('AutoProcessor failed for %s (%s); using the image-only Qwen-VL processor',
              path, error)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True,
                                                  trust_remote_code=trust_remote_code)
        image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f'{path}: cannot load tokenizer/image processor ({exc})') from exc
    cls = image_only_processor_class(model_type)
    proc = cls(image_processor=image_processor, tokenizer=tokenizer,
               chat_template=_read_chat_template(path, tokenizer))
    if proc.chat_template is None:
        raise ModelLoadError(f'{path}: no chat template (chat_template.jinja/json or in the '
                             'tokenizer config)')
    _apply_image_kwargs(proc, image_kwargs)
    return proc


def _apply_image_kwargs(proc, image_kwargs):
    ip = proc.image_processor
    for key, value in image_kwargs.items():
        if value is None:
            continue
        if key in ('max_pixels', 'min_pixels'):
            # Qwen image processors keep the pixel budget in size.{longest,shortest}_edge.
            field = 'longest_edge' if key == 'max_pixels' else 'shortest_edge'
            size = getattr(ip, 'size', None)
            if isinstance(size, dict):
                ip.size = {**size, field: int(value)}
            elif hasattr(size, field):
                setattr(size, field, int(value))
        setattr(ip, key, value)


def load_base_model(path, dtype=None, device=None, trust_remote_code=False):
    """Load the weights of a local image-text-to-text model folder (no adapter handling)."""
    from transformers import AutoModelForImageTextToText
    device = device or default_device()
    dtype = dtype or default_dtype(device)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=dtype, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f'{path}: cannot load the model ({exc})') from exc
    return model


def load_for_inference(model_dir, device=None, dtype=None, trust_remote_code=False,
                       merge_lora=True, **image_kwargs):
    """Load a base, merged or LoRA-adapter folder; return (model in eval mode, processor).

    A LoRA adapter is merged into the base weights unless ``merge_lora`` is False (then the
    PeftModel is returned). ``image_kwargs`` go to ``load_processor``.
    """
    model_dir = check_model_dir(model_dir)
    device = device or default_device()
    dtype = dtype or default_dtype(device)
    if (model_dir / 'adapter_config.json').is_file():
        from peft import PeftModel
        base_dir = adapter_base_dir(model_dir)
        model = load_base_model(base_dir, dtype, device, trust_remote_code)
        model = PeftModel.from_pretrained(model, model_dir, local_files_only=True)
        if merge_lora:
            model = model.merge_and_unload()
        proc_dir = model_dir if _has_processor_files(model_dir) else base_dir
        processor = load_processor(proc_dir, _model_type(base_dir), trust_remote_code,
                                   **image_kwargs)
    else:
        model = load_base_model(model_dir, dtype, device, trust_remote_code)
        processor = load_processor(model_dir, None, trust_remote_code, **image_kwargs)
    model.to(device)
    model.eval()
    return model, processor
