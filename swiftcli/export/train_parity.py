"""Train/serve parity: does the server prompt and sample a checkpoint as its training run did?

A checkpoint's args.json (ms-swift 3.x/4.x) or sft_args.json (2.x) says which template and system prompt the
model was trained with; its generation_config.json, if it has one, how it wants to be sampled. The server has
its own: the template and system prompt it resolved (a LoRA served beside others, or picked up by `deploy
--watch`, gets the base model's), and sampling defaults from the model folder it loaded. A difference here does
not fail any request: the model just answers a prompt it was never trained on, for example without the system
prompt it always saw. So each difference is said in one line (and `--strict_parity true` refuses to serve).

Pure: the comparison needs the tokenizer only (no engine). The prompts are compared as token ids of one sample
conversation without a system message, the place where a default system prompt appears on one side only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from swiftcli.config.spec import SAMPLING_KEYS, GenerationConfig, ModelSpec
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.errors import CheckpointError, SwiftError, TemplateError
from swiftcli.export.adapters import check_adapter
from swiftcli.hub.resolve import find_ckpt_args, read_json
from swiftcli.registry import models as model_registry
from swiftcli.registry.conversation import Message, encode_messages
from swiftcli.registry.templates import Template, get_template

# One conversation with a history (so that round separators count) and no system message.
SAMPLE_CONVERSATION: tuple[Message, ...] = (
    {"role": "user", "content": "Hello! Who are you?"},
    {"role": "assistant", "content": "I am an assistant."},
    {"role": "user", "content": "What is the capital of France?"},
)
# The generation_config.json keys whose value changes what a request without sampling fields gets.
GENERATION_KEYS = (*sorted(SAMPLING_KEYS), "max_new_tokens")
SAME = "same"


@dataclass(frozen=True)
class ParityItem:
    """One aspect compared: `aspect` (prompt, generation_config, adapter), whether both sides agree, and a line
    that says how."""

    aspect: str
    same: bool
    detail: str

    def line(self, checkpoint: str) -> str:
        return f"{checkpoint}: {self.aspect}: {self.detail}"


@dataclass(frozen=True)
class TrainServeReport:
    """What a checkpoint's training did against what the server will do, aspect by aspect."""

    checkpoint: str
    items: tuple[ParityItem, ...]

    @property
    def differences(self) -> list[ParityItem]:
        return [item for item in self.items if not item.same]

    @property
    def ok(self) -> bool:
        return not self.differences

    def lines(self, differences_only: bool = False) -> list[str]:
        return [item.line(self.checkpoint) for item in self.items if not (differences_only and item.same)]

    def summary(self) -> list[str]:
        """One line per difference; one line saying so when there is none."""
        if self.ok:
            return [f"{self.checkpoint}: serving matches training: "
                    + "; ".join(f"{i.aspect} {i.detail}" for i in self.items)]
        return self.lines(differences_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "ok": self.ok,
                "items": [{"aspect": i.aspect, "same": i.same, "detail": i.detail} for i in self.items]}


def train_serve_report(ckpt_dir: Path, serving: Template, generation: GenerationConfig,
                       base_spec: ModelSpec | None = None, name: str | None = None) -> TrainServeReport:
    """Compare checkpoint `ckpt_dir` with a server that prompts through `serving` (a template bound to the
    tokenizer it serves with) and starts requests from `generation`. With `base_spec`, a LoRA adapter is also
    checked for weights vLLM would not apply (see export.adapters)."""
    ckpt_dir = Path(ckpt_dir)
    args = find_ckpt_args(ckpt_dir)
    items = [compare_prompt(args, serving), compare_generation(ckpt_dir, generation)]
    if base_spec is not None and (ckpt_dir / "adapter_config.json").is_file():
        items.append(compare_adapter(ckpt_dir, base_spec))
    return TrainServeReport(name or ckpt_dir.name, tuple(items))


def serving_template(spec: ModelSpec, trust_remote_code: bool = False,
                     enable_thinking: bool | None = None) -> Template:
    """The template a server of `spec` prompts with, bound to its tokenizer (as `swiftcli.load` binds it)."""
    return get_template(spec.template_type, load_tokenizer(spec, trust_remote_code), spec.default_system,
                        enable_thinking=enable_thinking)


def serving_reports(checkpoints: Mapping[str, Path], spec: ModelSpec, generation: GenerationConfig,
                    trust_remote_code: bool = False, enable_thinking: bool | None = None,
                    adapters_served: bool = True) -> list[TrainServeReport]:
    """A report per checkpoint (name -> folder) served on `spec` with the server defaults `generation`;
    `adapters_served` false when the adapters are merged first (vLLM then applies all of them)."""
    serving = serving_template(spec, trust_remote_code, enable_thinking)
    return [train_serve_report(path, serving, generation, spec if adapters_served else None, name)
            for name, path in checkpoints.items()]


def refuse_differences(reports: Sequence[TrainServeReport]) -> None:
    """`--strict_parity true`: a CheckpointError naming the first difference (all of them were said before)."""
    lines = [line for report in reports for line in report.lines(differences_only=True)]
    if lines:
        more = f" (and {len(lines) - 1} more above)" if len(lines) > 1 else ""
        raise CheckpointError(f"serving differs from training: {lines[0]}{more}",
                              "serve the checkpoint with its training settings, or drop --strict_parity")


def training_template(args: dict[str, Any], serving: Template) -> Template:
    """The template and system prompt the training run used, bound to the serving tokenizer. ms-swift's rules:
    `template_type` (2.x) or `template` (3.x), AUTO meaning the model type's own; `system` null meaning the
    template's default, "" meaning none."""
    name = args.get("template_type") or args.get("template")
    if not isinstance(name, str) or name in ("AUTO", "auto"):
        model_type = args.get("model_type")
        info = model_registry.get(model_type) if isinstance(model_type, str) and model_type in \
            model_registry.names() else None
        name = info.template if info else serving.template_type
    system = args.get("system")
    return get_template(name, serving.tokenizer, system if isinstance(system, str) else None)


def compare_prompt(args: dict[str, Any], serving: Template,
                   conversation: Sequence[Message] = SAMPLE_CONVERSATION) -> ParityItem:
    """The sample conversation's prompt token ids under the training template and system prompt vs the
    server's."""
    if not args:
        return ParityItem("prompt", False, "no args.json or sft_args.json beside the checkpoint, so its training "
                                           "template and system prompt are unknown")
    try:
        training = training_template(args, serving)
    except TemplateError as exc:
        return ParityItem("prompt", False, f"cannot render training's prompt: {exc.message}")
    if not (training.support_multi_round and serving.support_multi_round):
        conversation = conversation[-1:]
    trained_ids = encode_messages(training, conversation)
    served_ids = encode_messages(serving, conversation)
    sides = (f"template {training.template_type}, system {_system(training)}",
             f"template {serving.template_type}, system {_system(serving)}")
    if trained_ids == served_ids:
        return ParityItem("prompt", True, f"{SAME} {len(served_ids)} token ids ({sides[1]})")
    first = next((i for i, (a, b) in enumerate(zip(trained_ids, served_ids, strict=False)) if a != b),
                 min(len(trained_ids), len(served_ids)))
    what = "system prompt" if training.default_system != serving.default_system else "prompt"
    return ParityItem("prompt", False, f"{what} differs: training ({sides[0]}) renders {len(trained_ids)} "
                                       f"tokens, serving ({sides[1]}) {len(served_ids)}; they part at token "
                                       f"{first}")


def compare_generation(ckpt_dir: Path, serving: GenerationConfig) -> ParityItem:
    """The checkpoint's own generation_config.json (the keys it sets) vs the server's defaults for requests."""
    path = ckpt_dir / "generation_config.json"
    if not path.is_file():
        return ParityItem("generation_config", True, f"{SAME}: the checkpoint has no generation_config.json of "
                                                     "its own")
    try:
        given = read_json(path, f"generation_config.json of {ckpt_dir.name}")
        trained = GenerationConfig.from_model_dir(ckpt_dir)
    except SwiftError as exc:
        return ParityItem("generation_config", False, f"cannot read the checkpoint's: {exc.message}")
    keys = [k for k in GENERATION_KEYS if given.get(k) is not None]
    mine, theirs = _effective(trained, keys), _effective(serving, keys)
    if mine == theirs:
        return ParityItem("generation_config", True, f"{SAME} ({_show(theirs) or 'sets no sampling'})")
    changed = {k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)}
    return ParityItem("generation_config", False,
                      f"the checkpoint's {_show(mine, changed)}; the server's default "
                      f"{_show(theirs, changed)}")


def compare_adapter(ckpt_dir: Path, base_spec: ModelSpec) -> ParityItem:
    """Would vLLM apply all of the adapter? (vision-tower weights, a wrong base: export.adapters says)."""
    try:
        info = check_adapter(ckpt_dir, base_spec)
    except SwiftError as exc:
        return ParityItem("adapter", False, exc.message)
    checked = f", {info.modules} modules' shapes checked" if info.modules else ""
    return ParityItem("adapter", True, f"{SAME}: vLLM applies all of it (rank {info.rank}{checked})")


def _effective(config: GenerationConfig, keys: Sequence[str]) -> dict[str, Any]:
    """The values of `keys` that change what a request gets: greedy makes temperature, top_p and top_k moot."""
    known = {f.name for f in fields(GenerationConfig)}
    sampling = any(k in SAMPLING_KEYS for k in keys)
    values: dict[str, Any] = {}
    if sampling:
        values["greedy"] = config.greedy
        if not config.greedy:
            values.update(temperature=config.temperature, top_p=config.top_p, top_k=config.top_k)
    for key in keys:
        if key in known and key not in ("do_sample", "temperature", "top_p", "top_k"):
            values[key] = getattr(config, key)
    return values


def _show(values: dict[str, Any], only: set[str] | None = None) -> str:
    shown = {k: v for k, v in values.items() if only is None or k in only}
    if "greedy" in shown:
        greedy = shown.pop("greedy")
        return ", ".join(["greedy" if greedy else "sampled", *(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                                               for k, v in shown.items())])
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())


def _system(template: Template) -> str:
    system = template.default_system
    if system is None:
        return "none" if not template.is_hf else "the chat template's own"
    return repr(system if len(system) <= 60 else system[:57] + "...")
