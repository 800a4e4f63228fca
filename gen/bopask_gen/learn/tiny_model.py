"""A tiny random Qwen2.5-VL (~0.1M parameters) for tests and dry runs of the training code.

It has the real architecture (Qwen2.5-VL vision tower with window attention, M-RoPE text
model), a byte-level BPE tokenizer trained here with ``tokenizers`` on a few texts (with the
Qwen special tokens and the Qwen-VL chat template) and a Qwen image processor with a small
pixel budget. It is saved like a downloaded model folder (``processor_class``
Qwen2_5_VLProcessor), so the normal loading path of ``model_loading`` is what tests use.
It cannot learn BOP-ASK; it proves the plumbing.

``python -m bopask_gen.learn.tiny_model OUT_DIR`` writes one.
"""

import json
from pathlib import Path
import sys

SPECIAL_TOKENS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|vision_start|>',
                  '<|vision_end|>', '<|image_pad|>', '<|video_pad|>')
# The Qwen2-VL / Qwen2.5-VL chat template (images and text parts; no vision ids).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
BASE_CORPUS = (
    'You are a helpful assistant. system user assistant',
    'Locate the cuboid corners of the box. How can I grasp the can? Show me how to move the '
    'mustard to the location of the peas. Which objects do you move first to grab it? '
    'Is the can to the right of the yogurt? Is it closer to you than the box? Yes No',
    '[(0, 0), (123, 456), (789, 1000), (0.125, 0.500), (0.987, 0.654)] 0123456789 .,()[]',
    'None: nothing needs to be moved.',
)


def train_tokenizer(texts, vocab_size=600):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with the Qwen special tokens and template."""
    from tokenizers import decoders, models, pre_tokenizers, Tokenizer, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(BASE_CORPUS) + list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token='<|im_end|>',
                                   pad_token='<|endoftext|>')
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_qwen_vl(out_dir, texts=(), hidden_size=32, layers=2, max_pixels=112 * 112,
                       seed=0):
    """Write a tiny random Qwen2.5-VL model folder to ``out_dir``; return its Path.

    ``texts`` (e.g. the dataset's questions and answers) enlarge the tokenizer corpus.
    """
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from bopask_gen.learn.model_loading import image_only_processor_class

    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts)
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=max_pixels)
    processor = image_only_processor_class('qwen2_5_vl')(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    heads = 2
    head_dim = hidden_size // heads
    half = head_dim // 2  # M-RoPE splits head_dim / 2 over (time, height, width)
    section = [half - 2 * (half // 3), half // 3, half // 3]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=1,
            max_position_embeddings=4096, bos_token_id=ids[0], eos_token_id=ids[2],
            pad_token_id=ids[0],
            rope_parameters={'rope_type': 'default', 'mrope_section': section,
                             'rope_theta': 10000.0}),
        vision_config=dict(depth=2, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                           num_heads=heads, out_hidden_size=hidden_size,
                           fullatt_block_indexes=[1], window_size=56),
        image_token_id=ids[5], video_token_id=ids[6], vision_start_token_id=ids[3],
        vision_end_token_id=ids[4])
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids[2]
    model.generation_config.pad_token_id = ids[0]
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    # Look like a downloaded Qwen2.5-VL folder, whose processor class is the stock one.
    proc_cfg = out_dir / 'processor_config.json'
    cfg = json.loads(proc_cfg.read_text())
    cfg['processor_class'] = 'Qwen2_5_VLProcessor'
    proc_cfg.write_text(json.dumps(cfg, indent=2))
    return out_dir


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: python -m bopask_gen.learn.tiny_model OUT_DIR')
    print(build_tiny_qwen_vl(sys.argv[1]))
