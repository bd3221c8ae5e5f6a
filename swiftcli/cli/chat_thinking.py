"""Thinking in the chat REPL: `/think on|off|show|hide`, and answers whose `<think>` block is shown dimmed (or
hidden) above the answer while it streams."""

from __future__ import annotations

from typing import Any

from swiftcli.cli.terminal import AnswerView


def think_command(repl: Any, arg: str) -> str:
    """Apply `/think ARG` to the REPL; returns the note to show."""
    template = repl.template
    word = arg.strip().lower()
    if word in ("show", "hide"):
        repl.show_thinking = word == "show"
        return f"Thinking is {'shown (dimmed)' if repl.show_thinking else 'hidden'}."
    if word not in ("on", "off"):
        return "usage: /think on|off|show|hide"
    if template.has_thinking_switch:
        repl.enable_thinking = word == "on"
        return f"Thinking {word} for the next answers."
    repl.show_thinking = word == "on"
    return (f"Template {template.template_type!r} has no thinking switch; thinking the model writes is "
            f"{'shown' if repl.show_thinking else 'hidden'}.")


class ThinkingAnswerView(AnswerView):
    """AnswerView that shows the answer's think block dimmed above it, or hides it."""

    def __init__(self, console: Any, markdown: bool, template: Any, show: bool) -> None:
        from swiftcli.parsers import get_reasoning_parser
        from swiftcli.registry.tool_prompts import default_reasoning_parser

        super().__init__(console, markdown)
        self.parser = get_reasoning_parser(default_reasoning_parser(template.template_type) or "qwen3")
        self.show = show
        self.reasoning = ""
        self.reasoning_shown = 0

    def update(self, text: str, final: bool = False) -> None:
        reasoning, answer = self.parser.split(text, final)
        self.reasoning = reasoning if self.show else ""
        if self.markdown:
            super().update(answer, final)
            return
        if self.reasoning[self.reasoning_shown:]:
            self.console.print(self.reasoning[self.reasoning_shown:], style="dim", end="", markup=False,
                               highlight=False)
            self.reasoning_shown = len(self.reasoning)
        if answer and self.reasoning and not self.shown:
            self.console.file.write("\n")
        super().update(answer, final)

    def _render(self, text: str) -> Any:
        if not self.reasoning:
            return super()._render(text)
        from rich.console import Group
        from rich.text import Text

        return Group(Text(self.reasoning.rstrip("\n"), style="dim"), super()._render(text))
