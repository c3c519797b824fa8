"""Subword vocabularies, one per language, built from the training text only.

A WordPiece vocabulary (Hugging Face `tokenizers`) rather than BPE, for three reasons:

- it encodes a word by greedy longest-match-first over its pieces, as Tensor2Tensor's
  `SubwordTextEncoder` does, so it is the nearest well-kept stand-in for the vocabulary of the
  workflow this case maps;
- the text it sees is already cleaned by `nmt_translation.data.preprocess` (lower case a-z, the
  punctuation `. ? ! , ¿`, single spaces), so splitting on spaces and joining pieces back with
  `##` inverts it exactly: `decode(encode(text)) == text` for any cleaned text;
- the pieces read as words and word endings ("cans", "##ado"), which keeps the attention
  heat-maps legible.

Every letter and mark of the cleaned alphabet is in the vocabulary both as a word start and as a
`##` continuation, so a cleaned word never becomes `[UNK]`: a word unseen in training is spelt
from smaller pieces. The ids: `[PAD]`=0 (the models mask on it), `[START]`=1, `[END]`=2,
`[UNK]`=3, then the learnt pieces. `encode` returns the pieces' ids only; the models add
`start_id` and `end_id` around them.

A vocabulary is one JSON file (the tokenizer's own format), spa.json and eng.json beside the
model, so the server and the trainers load the same one.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, START, END, UNK = "[PAD]", "[START]", "[END]", "[UNK]"
SPECIAL = [PAD, START, END, UNK]  # in id order: PAD=0, START=1, END=2, UNK=3
PREFIX = "##"
# What nmt_translation.data.preprocess keeps: a-z and five punctuation marks.
ALPHABET = list(string.ascii_lowercase) + list(".?!,¿")


class VocabError(ValueError):
    """A vocabulary file that is not one this module wrote."""


class Vocab:
    """A WordPiece tokenizer over cleaned text with fixed special ids (see the module)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        ids = [tokenizer.token_to_id(token) for token in SPECIAL]
        if ids != list(range(len(SPECIAL))):
            raise VocabError(f"special tokens {SPECIAL} must have ids 0-3, found {ids}")
        self.tokenizer = tokenizer
        self.pad_id, self.start_id, self.end_id, self.unk_id = ids

    @classmethod
    def build(cls, texts: Iterable[str], size: int) -> Vocab:
        """Learn `size` pieces (specials and alphabet included) from cleaned `texts`.

        The trainer stops at `size`; letters it kept only at word starts are then added as
        continuations too, so `.size` can exceed `size` by up to 31.

        Give it the training split's text only: a word seen only in validation or test must not
        become a piece of its own, or the scores on them would flatter the model.
        """
        if size < len(SPECIAL) + 2 * len(ALPHABET):
            raise ValueError(f"a vocabulary needs room for the alphabet: size >= 66, got {size}")
        learner = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix=PREFIX))
        learner.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordPieceTrainer(
            vocab_size=size,
            special_tokens=SPECIAL,
            initial_alphabet=ALPHABET,
            continuing_subword_prefix=PREFIX,
            show_progress=False,
        )
        learner.train_from_iterator(texts, trainer)
        # The trainer keeps a letter as a continuation only where training used it there: add
        # the missing ones so that no cleaned word falls back to [UNK].
        vocab = learner.get_vocab()
        for piece in ALPHABET + [PREFIX + c for c in ALPHABET]:
            vocab.setdefault(piece, len(vocab))
        tokenizer = Tokenizer(
            models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=PREFIX)
        )
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        # cleanup=False: keep the spaces before punctuation that preprocess put there.
        tokenizer.decoder = decoders.WordPiece(prefix=PREFIX, cleanup=False)
        return cls(tokenizer)

    @property
    def size(self) -> int:
        """How many ids there are: the models' embedding and output sizes."""
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """The ids of a cleaned sentence's pieces, without START and END."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        """The cleaned text of ids; PAD, START and END are left out, UNK shows as [UNK]."""
        skip = {self.pad_id, self.start_id, self.end_id}
        return self.tokenizer.decode(
            [int(i) for i in ids if int(i) not in skip], skip_special_tokens=False
        )

    def tokens(self, text: str) -> list[str]:
        """The pieces of a cleaned sentence, as strings (for plots and tests)."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def save(self, path: Path | str) -> Path:
        """Write the vocabulary as one JSON file (spa.json, eng.json)."""
        path = Path(path)
        path.write_text(self.tokenizer.to_str(pretty=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path | str) -> Vocab:
        """Read a vocabulary written by `save`."""
        path = Path(path)
        try:
            tokenizer = Tokenizer.from_str(path.read_text(encoding="utf-8"))
        except Exception as err:  # missing, not UTF-8, or not JSON: tokenizers raises Exception
            raise VocabError(f"{path}: not a vocabulary file ({err})") from err
        try:
            return cls(tokenizer)
        except VocabError as err:
            raise VocabError(f"{path}: {err}") from err
