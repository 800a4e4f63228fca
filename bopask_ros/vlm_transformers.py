"""The ``transformers`` VLM backend: any local Hugging Face image-text-to-text model folder.

Loading goes through ``bopask_gen.learn.model_loading`` (AutoProcessor +
AutoModelForImageTextToText, local files only, bfloat16 on a GPU, float32 on the CPU,
``trust_remote_code`` only when the parameter says so, an image-only Qwen-VL processor where
transformers 5 would need torchvision). A fine-tuned folder, a merged LoRA, or a LoRA
adapter folder (``adapter_config.json`` naming its base) can be given as ``model_path``; an
adapter may also be given separately as ``adapter_path`` on top of ``model_path``.
Answers are greedy (``bopask_gen.learn.inference.generate_answers``), so the node's parser
sees exactly what evaluation sees.
"""

from pathlib import Path


class TransformersBackend:
    """A local VLM answering one question about one image at a time."""

    name = 'transformers'

    def __init__(self, model_path, adapter_path=None, device='auto', max_new_tokens=128,
                 trust_remote_code=False):
        from bopask_gen.learn import model_loading as ml
        if not model_path:
            raise ml.ModelLoadError('the transformers backend needs model_path: a local model '
                                    'folder (nothing is downloaded)')
        device = ml.default_device() if device in ('auto', '', None) else device
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        if adapter_path:
            from peft import PeftModel
            base = ml.check_model_dir(model_path)
            adapter = ml.check_model_dir(adapter_path)
            model = ml.load_base_model(base, device=device, trust_remote_code=trust_remote_code)
            model = PeftModel.from_pretrained(model, adapter, local_files_only=True)
            model = model.merge_and_unload()
            proc_dir = adapter if (Path(adapter) / 'tokenizer_config.json').is_file() else base
            self.processor = ml.load_processor(proc_dir, trust_remote_code=trust_remote_code)
            model.to(device)
            model.eval()
            self.model = model
        else:
            self.model, self.processor = ml.load_for_inference(
                model_path, device=device, trust_remote_code=trust_remote_code)

    def answer(self, image_rgb, question, request):
        """Return the model's text answer to ``question`` about ``image_rgb``."""
        from bopask_gen.learn.inference import generate_answers
        return generate_answers(self.model, self.processor, [image_rgb], [question],
                                max_new_tokens=self.max_new_tokens)[0]
