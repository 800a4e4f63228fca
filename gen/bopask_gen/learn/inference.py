"""Batched answers of a loaded VLM to questions about images (greedy decoding)."""

import numpy as np

from bopask_gen.learn.data import prompt_messages

DEFAULT_MAX_NEW_TOKENS = 256


def generate_answers(model, processor, images, questions, max_new_tokens=DEFAULT_MAX_NEW_TOKENS):
    """Answer ``questions[i]`` about ``images[i]``; return the answer texts.

    Images are PIL images or HxWx3 uint8 RGB arrays (as the ROS camera nodes give them).

    Prompts are built with the processor's chat template and left-padded so that every
    row's generation starts right after its own prompt.
    """
    import torch
    if len(images) != len(questions):
        raise ValueError(f'{len(images)} images for {len(questions)} questions')
    if not questions:
        return []
    from PIL import Image
    images = [Image.fromarray(np.asarray(im, dtype=np.uint8)) if not isinstance(im, Image.Image)
              else im for im in images]
    prompts = [processor.apply_chat_template(prompt_messages(q), tokenize=False,
                                             add_generation_prompt=True) for q in questions]
    processor.tokenizer.padding_side = 'left'
    enc = processor(text=prompts, images=images, padding=True, return_tensors='pt')
    enc = enc.to(model.device)
    tok = processor.tokenizer
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    new_tokens = out[:, enc['input_ids'].shape[1]:]
    return [t.strip() for t in tok.batch_decode(new_tokens, skip_special_tokens=True)]
