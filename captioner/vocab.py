"""Tokenizer and vocabulary.

Tokenization (nltk's RegexpTokenizer, which needs no data download): captions are lower-cased, a
word is a run of letters and digits that may contain inner apostrophes or hyphens ("man's",
"skate-board"), and everything else (punctuation, quotes, emoji) is dropped. The vocabulary is
built from the training split only; words seen fewer than `min_count` times map to <unk>. It is
stored in checkpoints as a plain list of words, the index of a word being its id.
"""

from collections import Counter
from collections.abc import Iterable

from nltk.tokenize import RegexpTokenizer

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

_tokenizer = RegexpTokenizer(r"[^\W_]+(?:['\-][^\W_]+)*")


def tokenize(text: str) -> list[str]:
    return _tokenizer.tokenize(text.lower())


class Vocab:
    """Word <-> id; ids 0..3 are <pad>, <start>, <end>, <unk>."""

    def __init__(self, words: list[str]):
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {words[:4]}")
        if len(set(words)) != len(words):
            raise ValueError("a vocabulary must not repeat words")
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        self.pad, self.start, self.end, self.unk = range(len(SPECIALS))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        """<start> w1 .. wn <end>, with at most `max_tokens` words."""
        tokens = tokenize(text)[:max_tokens]
        return [self.start, *(self.index.get(t, self.unk) for t in tokens), self.end]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The words of a generated sequence, stopping at <end> and skipping <start>/<pad>."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end:
                break
            if i not in (self.start, self.pad):
                words.append(self.words[i])
        return words


def build_vocab(captions: Iterable[str], min_count: int = 1) -> Vocab:
    """A vocabulary of the words seen at least `min_count` times, most frequent first."""
    counts = Counter(token for caption in captions for token in tokenize(caption))
    kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return Vocab([*SPECIALS, *kept])
