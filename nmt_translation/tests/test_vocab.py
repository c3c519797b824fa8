"""nmt_translation.vocab: BPE vocabularies from training text only, fixed ids, one JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nmt_translation import data
from nmt_translation.vocab import WORD_START, Vocab, VocabError

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def split() -> data.Split:
    return data.split_by_source(data.load_sample(), seed=0)


@pytest.fixture(scope="module")
def english(split: data.Split) -> Vocab:
    return Vocab.build([e for _, e in split.train], size=400)


def test_special_ids_are_fixed(english: Vocab) -> None:
    assert (english.pad_id, english.start_id, english.end_id, english.unk_id) == (0, 1, 2, 3)
    vocab = english.tokenizer.get_vocab()
    assert [vocab[t] for t in ("[PAD]", "[START]", "[END]", "[UNK]")] == [0, 1, 2, 3]
    assert english.size == len(vocab) == 400


def test_encode_then_decode_gives_the_cleaned_text_back(split: data.Split, english: Vocab) -> None:
    texts = [ref for refs in split.test.values() for ref in refs]
    for text in texts:
        ids = english.encode(text)
        assert english.unk_id not in ids and min(ids) > english.unk_id  # no special id inside
        assert english.decode(ids) == text
        # START, END and PAD around it, as the models feed and emit them, are left out.
        padded = [english.start_id, *ids, english.end_id, english.pad_id, english.pad_id]
        assert english.decode(padded) == text


def test_a_word_never_seen_is_spelt_from_pieces_not_unk(english: Vocab) -> None:
    text = data.preprocess("¿Quién quiere un kiwi, Xavier?")
    ids = english.encode(text)
    assert english.unk_id not in ids and english.decode(ids) == text
    assert len(english.tokens("kiwi")) > 1 and WORD_START + "kiwi" not in english.tokens("kiwi")


def test_words_only_in_the_test_split_are_not_whole_tokens(split: data.Split) -> None:
    """The vocabulary learns from training text: a test-only word is no piece of its own."""
    train_text = [e for _, e in split.train]
    train_words = {w for text in train_text for w in text.split()}
    test_words = {w for refs in split.test.values() for ref in refs for w in ref.split()}
    test_only = test_words - train_words
    assert len(test_only) >= 2  # the sample's RARE words put some there
    # Room for every training word, so a test word would be whole had it leaked into training.
    vocab = Vocab.build(train_text, size=2000)
    whole = {piece[1:] for piece in vocab.tokenizer.get_vocab() if piece[0] == WORD_START}
    assert train_words <= whole
    assert not test_only & whole, test_only & whole
    # The control: building from train and test text makes them whole tokens.
    leaky = Vocab.build(train_text + [r for refs in split.test.values() for r in refs], 2000)
    assert {WORD_START + w for w in test_only} <= leaky.tokenizer.get_vocab().keys()


def test_building_in_another_process_gives_the_same_ids(split: data.Split, tmp_path: Path) -> None:
    """Two training nodes build their own vocabularies: they must agree, id for id.

    In a fresh interpreter, since hash-map order (which broke tokenizers' WordPiece trainer,
    huggingface/tokenizers#1794) differs between processes, not within one.
    """
    spanish = [s for s, _ in split.train]
    here = Vocab.build(spanish, 300).tokenizer.get_vocab()
    (tmp_path / "spa.txt").write_text("\n".join(spanish), encoding="utf-8")
    code = (
        "import sys; from nmt_translation.vocab import Vocab; "
        "Vocab.build(open(sys.argv[1], encoding='utf-8').read().split('\\n'), 300).save(sys.argv[2])"
    )
    for run in range(2):
        out = tmp_path / f"spa{run}.json"
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "spa.txt"), str(out)],
            cwd=REPO_ROOT,
            check=True,
            timeout=60,
        )
        assert Vocab.load(out).tokenizer.get_vocab() == here


def test_save_and_load_one_json_file(tmp_path: Path, english: Vocab) -> None:
    path = english.save(tmp_path / "eng.json")
    json.loads(path.read_text(encoding="utf-8"))  # one plain JSON file
    loaded = Vocab.load(path)
    text = "are you still at home ?"
    assert loaded.encode(text) == english.encode(text) and loaded.size == english.size
    assert loaded.decode(english.encode(text)) == text


def test_a_file_that_is_not_a_vocabulary_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(VocabError, match=r"bad\.json: not a vocabulary file"):
        Vocab.load(tmp_path / "bad.json")
    with pytest.raises(VocabError, match=r"missing\.json: not a vocabulary file"):
        Vocab.load(tmp_path / "missing.json")


def test_too_small_a_size_is_refused() -> None:
    with pytest.raises(ValueError, match="size >= 36"):
        Vocab.build(["hola"], size=10)
