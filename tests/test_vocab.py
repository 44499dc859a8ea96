import pytest

from captioner.vocab import SPECIALS, Vocab, build_vocab, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize('A Man\'s dog, riding a skate-board. "Great"!') == ["a", "man's", "dog", "riding", "a", "skate-board", "great"]
    assert tokenize("  ...  ") == []
    assert tokenize("Two_words 3 cats") == ["two", "words", "3", "cats"]


def test_vocab_from_training_captions_with_min_count():
    vocab = build_vocab(["a red circle", "a blue circle", "a red square"], min_count=2)
    assert vocab.words[:4] == list(SPECIALS)
    assert set(vocab.words[4:]) == {"a", "red", "circle"}
    assert vocab.words[4] == "a"  # most frequent first
    ids = vocab.encode("A blue circle")
    assert ids[0] == vocab.start and ids[-1] == vocab.end
    assert ids[2] == vocab.unk  # "blue" was seen once
    assert vocab.decode(ids) == ["a", "<unk>", "circle"]


def test_encode_truncates_and_decode_stops_at_end():
    vocab = build_vocab(["one two three four"])
    assert len(vocab.encode("one two three four", max_tokens=2)) == 4
    ids = [vocab.index["one"], vocab.end, vocab.index["two"]]
    assert vocab.decode(ids) == ["one"]


def test_vocab_round_trips_through_a_plain_list():
    vocab = build_vocab(["x y z"])
    assert Vocab(list(vocab.words)).index == vocab.index
    with pytest.raises(ValueError, match="start with"):
        Vocab(["a", "b"])
