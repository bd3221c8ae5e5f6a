"""Scores, from well-kept libraries: BLEU-4 from sacrebleu, ROUGE-L from rouge-score; all on a 0-100 scale.

Chinese (and other CJK) text has no spaces, and rouge-score's own tokenizer drops every non-ASCII character, so
ROUGE-L gets our tokenizer: lower-cased ASCII words and numbers, plus each CJK character on its own ("char",
the default) or jieba's words ("jieba"). BLEU uses sacrebleu's standard `13a` tokenizer, or its `zh` tokenizer
(one token per CJK character) when a dataset's references hold CJK text.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Sequence
from typing import Any

from swiftcli.errors import MissingDependencyError, UsageError

ZH_TOKENIZERS = ("char", "jieba")
_CJK = (
    "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f"
)
CJK_CHAR = re.compile(f"[{_CJK}]")
_CHAR_TOKENS = re.compile(f"[{_CJK}]|[a-z0-9]+")


def has_cjk(text: str) -> bool:
    return CJK_CHAR.search(text) is not None


def normalize(text: str) -> str:
    """NFKC, trimmed, runs of whitespace as one space: what exact match compares."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return 100.0 if normalize(prediction) == normalize(reference) else 0.0


class RougeTokenizer:
    """rouge-score's tokenizer interface (`tokenize(text) -> list[str]`) with CJK support."""

    def __init__(self, zh_tokenizer: str = "char") -> None:
        if zh_tokenizer not in ZH_TOKENIZERS:
            raise UsageError(f"the Chinese tokenizer must be one of {', '.join(ZH_TOKENIZERS)}, not {zh_tokenizer!r}")
        self.zh_tokenizer = zh_tokenizer
        self._jieba: Any = None

    def tokenize(self, text: str) -> list[str]:
        text = normalize(text).lower()
        if self.zh_tokenizer == "char" or not has_cjk(text):
            return _CHAR_TOKENS.findall(text)
        tokens: list[str] = []
        for word in self._cut(text):
            if has_cjk(word):
                tokens.append("".join(ch for ch in word if ch.isalnum()) or word)
            else:
                tokens += _CHAR_TOKENS.findall(word)
        return [t for t in tokens if t.strip()]

    def _cut(self, text: str) -> list[str]:
        if self._jieba is None:
            try:
                with warnings.catch_warnings():
                    # jieba 0.42 imports pkg_resources, which warns on every import on new setuptools.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    import jieba  # deferred: jieba loads only when needed (a light start-up)
            except ImportError as exc:
                raise MissingDependencyError("jieba is not installed", "pip install 'swiftcli[eval]'") from exc
            jieba.setLogLevel(60)
            self._jieba = jieba
        return list(self._jieba.lcut(text))


class TextScorer:
    """Exact match, ROUGE-L F1 and BLEU-4 for one dataset's predictions against single references."""

    def __init__(self, references: Sequence[str], zh_tokenizer: str = "char") -> None:
        try:
            # deferred: rouge_score loads only when needed (a light start-up)
            from rouge_score.rouge_scorer import RougeScorer
            from sacrebleu.metrics import BLEU
        except ImportError as exc:
            raise MissingDependencyError(f"{exc.name} is not installed", "pip install 'swiftcli[eval]'") from exc
        self.bleu_tokenizer = "zh" if any(has_cjk(r) for r in references) else "13a"
        self.rouge_tokenizer = RougeTokenizer(zh_tokenizer)
        self._rouge = RougeScorer(["rougeL"], tokenizer=self.rouge_tokenizer)
        self._bleu_corpus = BLEU(tokenize=self.bleu_tokenizer)
        # Sentence BLEU on short answers is mostly 0 without lower n-gram orders taking over: effective order.
        self._bleu_sentence = BLEU(tokenize=self.bleu_tokenizer, effective_order=True)

    def sample(self, prediction: str, reference: str) -> dict[str, float]:
        """Per-sample scores; `bleu` here is sentence BLEU (smoothed), not the corpus score."""
        rouge = self._rouge.score(reference, prediction)["rougeL"].fmeasure
        bleu = self._bleu_sentence.sentence_score(prediction, [reference]).score
        return {"exact_match": exact_match(prediction, reference), "rouge_l": 100.0 * rouge, "bleu": bleu}

    def corpus_bleu(self, predictions: Sequence[str], references: Sequence[str]) -> float:
        if not predictions:
            return 0.0
        return float(self._bleu_corpus.corpus_score(list(predictions), [list(references)]).score)

    def describe(self) -> dict[str, str]:
        zh = "jieba words" if self.rouge_tokenizer.zh_tokenizer == "jieba" else "characters"
        return {
            "bleu": f"sacrebleu corpus BLEU-4, tokenize={self.bleu_tokenizer}",
            "rouge_l": f"rouge-score ROUGE-L F1, lower-cased ASCII words, CJK as {zh}, no stemming",
            "exact_match": "NFKC, trimmed, whitespace collapsed, case-sensitive",
        }


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
