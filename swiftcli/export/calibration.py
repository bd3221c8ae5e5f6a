"""Calibration texts for quantization: rows of a local jsonl/csv rendered with the model's template, or a small
built-in set of varied texts (prose, dialogue, code, numbers, lists, a few languages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swiftcli.data.records import read_records
from swiftcli.errors import InputError

BUILTIN_TEXTS = (
    "The capital of France is Paris, a city on the Seine known for the Louvre, the Eiffel Tower and its cafés. "
    "About two million people live in the city proper and more than twelve million in the metropolitan area.",
    "User: Can you help me plan a three-day trip to Kyoto?\nAssistant: Of course. On the first day, visit "
    "Fushimi Inari early in the morning before the crowds, then walk through the Higashiyama district.",
    "def binary_search(items, target):\n    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n        mid = (lo + hi) "
    "// 2\n        if items[mid] == target:\n            return mid\n        if items[mid] < target:\n"
    "            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1\n",
    "Photosynthesis converts light energy into chemical energy. Plants take in carbon dioxide and water and, "
    "using sunlight captured by chlorophyll, produce glucose and release oxygen as a by-product.",
    "Question: A train travels 180 kilometres in 2.5 hours. What is its average speed?\nAnswer: The average "
    "speed is distance divided by time: 180 / 2.5 = 72 kilometres per hour.",
    "Ingredients: 200 g flour, 2 eggs, 300 ml milk, a pinch of salt, butter for the pan. Whisk the flour and "
    "salt, add the eggs, then pour in the milk slowly until the batter is smooth. Rest it for 30 minutes.",
    "SELECT customers.name, COUNT(orders.id) AS order_count FROM customers LEFT JOIN orders ON orders.customer_id "
    "= customers.id WHERE orders.created_at >= '2024-01-01' GROUP BY customers.name ORDER BY order_count DESC;",
    "La Révolution française commence en 1789 avec la convocation des États généraux. Elle met fin à la "
    "monarchie absolue et proclame la Déclaration des droits de l'homme et du citoyen.",
    "Der Rhein entspringt in den Schweizer Alpen und mündet nach etwa 1 230 Kilometern in die Nordsee. Er ist "
    "eine der wichtigsten Wasserstraßen Europas.",
    "El agua hierve a cien grados Celsius al nivel del mar, pero a mayor altitud la presión atmosférica es "
    "menor y el punto de ebullición baja.",
    "To reset your password, open Settings, choose Account, then Security. Click 'Forgot password', enter the "
    "email address you signed up with, and follow the link we send you within fifteen minutes.",
    "The mitochondrion is often called the powerhouse of the cell: it produces most of the cell's supply of "
    "adenosine triphosphate, which is used as a source of chemical energy.",
    "Once upon a time, in a village between two mountains, there lived a clockmaker who never let any of his "
    "clocks strike midnight. Nobody knew why, until the winter the river froze.",
    "Step 1: Install the package with pip. Step 2: Create a configuration file named config.yaml. Step 3: Run "
    "the command with --config config.yaml and check the logs for errors.",
    "Dear Ms. Alvarez,\nThank you for your letter of 12 March. I am pleased to confirm your appointment as "
    "project manager from 1 April. Please find the contract attached.\nKind regards,\nJ. Chen",
    "In 1969, Apollo 11 landed on the Moon. Neil Armstrong and Buzz Aldrin spent about two and a half hours "
    "outside the lunar module while Michael Collins orbited above in the command module.",
    "const total = items.filter(item => item.active).map(item => item.price * item.quantity)"
    ".reduce((sum, value) => sum + value, 0);\nconsole.log(`Total: ${total.toFixed(2)}`);",
    "The derivative of x squared is 2x. More generally, the derivative of x to the power n is n times x to the "
    "power n minus one, a rule that follows from the binomial theorem.",
    "Pros: long battery life, bright screen, light. Cons: only two USB ports, the speakers are weak, and the "
    "keyboard flexes a little in the middle. Overall a good laptop for travel.",
    "北京是中国的首都，有三千多年的历史。故宫、天坛和长城都是著名的旅游景点。",
    "User: What is the difference between a list and a tuple in Python?\nAssistant: A list is mutable, so you "
    "can change its items; a tuple is immutable. Tuples can be used as dictionary keys, lists cannot.",
    "The stock market closed higher on Friday, with the index gaining 1.2 percent as energy and technology "
    "shares rose. Bond yields fell slightly after the central bank kept interest rates unchanged.",
    "Roses are red, violets are blue, the morning is quiet, the kettle is too. The cat on the windowsill "
    "watches the rain, and counts every drop on the old window pane.",
    "HTTP status 404 means the server cannot find the requested resource; 500 means the server met an "
    "unexpected condition; 429 means the client sent too many requests in a given amount of time.",
)

TEXT_KEYS = ("text", "content", "document")


def load_calibration(path: Path | None, template: Any, tokenizer: Any, n_samples: int,
                     seqlen: int) -> list[dict[str, list[int]]]:
    """Tokenized calibration rows (input_ids + attention_mask), at most n_samples, each cut to seqlen."""
    if path is None:
        texts = list(BUILTIN_TEXTS)
    else:
        texts = [t for t in (_row_text(row, template) for row in _read_rows(path)) if t]
        if not texts:
            raise InputError(
                f"{path} has no usable rows",
                "each row needs query/response, messages, instruction/output or text fields",
            )
    rows = []
    for text in texts[:n_samples]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:seqlen]
        if ids:
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    if not rows:
        raise InputError(f"{path} has no rows with text in them", "check the file's contents")
    return rows


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"calibration file {path} does not exist", "check --dataset")

    return [record.data for record in read_records(path)]


def _row_text(row: dict[str, Any], template: Any) -> str | None:
    """One row as the model sees it in training: the rendered prompt followed by the answer."""
    messages = row.get("messages") or row.get("conversations")
    if isinstance(messages, list) and messages:
        return _messages_text(messages, template)
    query = row.get("query") or row.get("instruction") or row.get("prompt")
    if isinstance(query, str) and query.strip():
        extra = row.get("input")
        if isinstance(extra, str) and extra.strip():
            query = f"{query}\n{extra}"
        answer = row.get("response") or row.get("output") or row.get("answer") or ""
        system = row.get("system") if isinstance(row.get("system"), str) else None
        return template.render(query, system=system) + (answer if isinstance(answer, str) else "")
    for key in TEXT_KEYS:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _messages_text(messages: list[Any], template: Any) -> str | None:
    raw = [(m.get("role") or m.get("from"), m.get("content") or m.get("value")) for m in messages
           if isinstance(m, dict)]
    turns: list[tuple[str, str]] = [(r, c) for r, c in raw if isinstance(r, str) and isinstance(c, str)]
    system = next((c for r, c in turns if r == "system"), None)
    dialogue = [(r, c) for r, c in turns if r != "system"]
    history: list[tuple[str, str]] = []
    text: str | None = None
    pending: str | None = None
    for role, content in dialogue:
        if role in ("user", "human"):
            pending = content
        elif role in ("assistant", "gpt") and pending is not None:
            text = template.render(pending, history=list(history) or None, system=system) + content
            history.append((pending, content))
            pending = None
    if text is None and pending is not None:
        text = template.render(pending, history=list(history) or None, system=system)
    return text
