"""The hf backend end to end on a tiny randomly initialised Idefics3 (SmolVLM v1 architecture) built
here, saved, and loaded back through AutoProcessor / AutoModelForImageTextToText: the image and the
prompt reach generate(), the reply is decoded and validated, and invalid replies are re-prompted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from start_frames import variant_picture
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    PreTrainedTokenizerFast,
)
from transformers.models.idefics3 import Idefics3ImageProcessorPil

from mstt.agent.worlds import load_config, make_task
from mstt.agent.worlds.maze import MazeTask
from mstt.perception import BackendError, PerceptionError, Scene, make_perceiver
from mstt.perception.chat import image_data_url
from mstt.perception.hf_vlm import to_hf_conversation
from mstt.perception.prompts import PROMPTS_DIR
from mstt.perception.vlm import ROUTE_PARSER

from repo_paths import CONFIGS

# SmolVLM-Instruct's chat template: every role, content as a list of text and image parts.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
]
VOCAB = 1200
MAX_NEW_TOKENS = 8


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer Idefics3 with a BPE tokenizer trained here on the prompts, saved like a hub model."""
    corpus = [p.read_text() for p in PROMPTS_DIR.glob("*.txt")] + [ROUTE_PARSER.get_format_instructions()]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe.train_from_iterator(
        corpus * 4, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIAL, initial_alphabet=alphabet)
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=SPECIAL[3:],
        chat_template=CHAT_TEMPLATE,
    )
    images = Idefics3ImageProcessorPil(
        do_resize=True, size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=False
    )
    processor = Idefics3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_len=1, chat_template=CHAT_TEMPLATE
    )
    ids = dict(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = Idefics3Config(
        text_config=dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            num_key_value_heads=2,
            max_position_embeddings=8192,
            **tiny,
            **ids,
        ),
        vision_config=dict(image_size=32, patch_size=16, **tiny),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-idefics3")
    Idefics3ForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def t1() -> tuple[MazeTask, Scene, np.ndarray]:
    task = make_task(load_config(CONFIGS / "maze/t1.yaml"))
    env = task.make_env(render_mode="rgb_array")
    try:
        env.reset(seed=0, options=task.reset_options())
        frame = task.render_frame(env)
    finally:
        env.close()
    return task, Scene.from_task(task), frame


def _spy_generate(perceiver: Any, answers: list[str] | None = None) -> list[dict[str, Any]]:
    """Record every generate() call; with `answers`, replace the generated tokens by those texts."""
    model, processor = perceiver.chat.model, perceiver.chat.processor
    real = model.generate
    calls: list[dict[str, Any]] = []

    def generate(**inputs: Any) -> torch.Tensor:
        calls.append(inputs)
        output = real(**inputs)
        assert output.shape[1] > inputs["input_ids"].shape[1]  # the real model generated
        if answers:
            new = processor.tokenizer(answers.pop(0), return_tensors="pt", add_special_tokens=False)["input_ids"]
            output = torch.cat([inputs["input_ids"], new], dim=1)
        return output

    model.generate = generate
    return calls


def test_random_model_is_called_with_the_image_and_refused(tiny_vlm: Path, t1: Any, tmp_path: Path) -> None:
    _, scene, frame = t1
    config = {"model": str(tiny_vlm), "max_new_tokens": MAX_NEW_TOKENS, "overlay_dir": str(tmp_path)}
    perceiver = make_perceiver("hf", {**config, "max_reprompts": 1})
    assert type(perceiver.chat.model).__name__ == "Idefics3ForConditionalGeneration"
    calls = _spy_generate(perceiver)
    with pytest.raises(PerceptionError) as info:
        perceiver.perceive(frame, "go to the red ball", scene)
    assert len(calls) == 2  # the first answer and one re-prompt
    assert all(r.startswith(("attempt 1:", "attempt 2:")) for r in info.value.reasons)

    # generate() got exactly the frame, through the model's own image processor.
    expected = perceiver.chat.processor.image_processor(images=[frame], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(calls[0]["pixel_values"], expected)
    tokenizer = perceiver.chat.processor.tokenizer
    first = tokenizer.decode(calls[0]["input_ids"][0])
    assert first.startswith("<|im_start|>System: You are the eyes of a robot")
    assert "User:" in first and "<image>" in first and "Instruction: go to the red ball" in first
    assert first.endswith("Assistant:")
    second = tokenizer.decode(calls[1]["input_ids"][0])
    assert second.startswith(first[: -len("Assistant:")]) and "That route was refused" in second
    assert calls[0]["pixel_values"].shape == calls[1]["pixel_values"].shape  # one image per conversation


def test_decodes_only_new_tokens_and_accepts_a_valid_route(tiny_vlm: Path, t1: Any, tmp_path: Path) -> None:
    task, scene, frame = t1
    cells = task.layout.shortest_path(task.layout.start, task.layout.goal)
    route = scene.to_pixel(np.array([task.layout.cell_to_xy(c) for c in cells])).round(1).tolist()
    config = {"model": str(tiny_vlm), "max_new_tokens": MAX_NEW_TOKENS, "overlay_dir": str(tmp_path)}
    perceiver = make_perceiver("hf", config)
    calls = _spy_generate(perceiver, ["```json\n" + json.dumps({"points": route, "frame": "pixel"}) + "\n```"])
    demo = perceiver.perceive(frame, "go to the red ball", scene)
    assert len(calls) == 1 and demo.source == "vlm" and len(demo.points) == len(cells)
    assert perceiver.last_overlay is not None and perceiver.last_overlay.is_file()


def test_missing_model_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot load .*HFConfig.model"):
        make_perceiver("hf", {"model": str(tmp_path / "nowhere"), "local_files_only": True})
    with pytest.raises(ValueError, match="HFConfig.dtype"):
        make_perceiver("hf", {"model": "x", "dtype": "float8"})


def test_conversation_format() -> None:
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[1, 2] = (255, 0, 0)
    messages = [
        SystemMessage("sys"),
        HumanMessage(
            [{"type": "image_url", "image_url": {"url": image_data_url(image)}}, {"type": "text", "text": "hi"}]
        ),
        AIMessage("answer"),
        HumanMessage("again"),
    ]
    conversation, images = to_hf_conversation(messages)
    assert [m["role"] for m in conversation] == ["system", "user", "assistant", "user"]
    assert conversation[1]["content"] == [{"type": "image"}, {"type": "text", "text": "hi"}]
    assert conversation[3]["content"] == [{"type": "text", "text": "again"}]
    assert len(images) == 1
    np.testing.assert_array_equal(np.asarray(images[0]), image)


def test_house_map_goes_through_the_model(tiny_vlm: Path, tmp_path: Path) -> None:
    """A rendered house map and its description reach generate(); the answer in pixels becomes a floor demo."""
    task, scene, frame = variant_picture(CONFIGS / "house/blocked.yaml")
    floor = np.array([[2.5, 5.5], [3.0, 7.5], [3.0, 9.0], [13.5, 9.0], [13.5, 7.5], [14.5, 6.5]])
    route = scene.to_pixel(floor).round(2).tolist()
    config = {"model": str(tiny_vlm), "max_new_tokens": MAX_NEW_TOKENS, "overlay_dir": str(tmp_path)}
    perceiver = make_perceiver("hf", config)
    calls = _spy_generate(perceiver, [json.dumps({"points": route, "frame": "pixel"})])
    demo = perceiver.perceive(frame, "go to the red ball", scene)
    expected = perceiver.chat.processor.image_processor(images=[frame], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(calls[0]["pixel_values"], expected)
    prompt = perceiver.chat.processor.tokenizer.decode(calls[0]["input_ids"][0])
    assert "top-down map of a house" in prompt and "closed doorway between the living and the kitchen" in prompt
    assert demo.task == "house" and demo.source == "vlm"
    np.testing.assert_allclose(demo.positions, floor, atol=0.01)
    assert task.check_path(demo.positions, []).refusal is None
