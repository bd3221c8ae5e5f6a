import pytest

from swiftcli.errors import TemplateError
from swiftcli.registry import get_template


def test_qwen_prompt_matches_ms_swift_byte_for_byte():
    template = get_template("qwen")
    prompt = template.render("这有什么好吃的", [("浙江的省会在哪？", "浙江省会是杭州市。")])
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n浙江的省会在哪？<|im_end|>\n"
        "<|im_start|>assistant\n浙江省会是杭州市。<|im_end|>\n<|im_start|>user\n这有什么好吃的<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_empty_system_drops_the_system_block():
    assert get_template("qwen").render("hi", system="") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_llama_and_default_templates():
    assert get_template("llama", default_system="S").render("q") == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nq [/INST]"
    assert get_template("default").render("q", [("a", "b")]) == (
        "You are a helpful assistant.\n\n### Human:\na\n\n### Assistant:\nb\n\n### Human:\nq\n\n### Assistant:\n"
    )


def test_single_round_template_refuses_history():
    with pytest.raises(TemplateError, match="single-round"):
        get_template("default-generation").render("q", [("a", "b")])


def test_unknown_template_suggests_close_names():
    with pytest.raises(TemplateError, match="unknown template_type") as info:
        get_template("qwenn")
    assert "qwen" in (info.value.hint or "")
