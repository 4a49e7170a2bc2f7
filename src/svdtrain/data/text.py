"""Language-model corpora as 1-D token tensors: character, word (WikiText-2 / PTB) and byte level.

The character split follows nanoGPT's shakespeare_char prepare script (vocabulary = sorted set of
the whole file's characters, first 90% train, last 10% valid); the word level follows PyTorch's
word_language_model example (whitespace-split words plus ``<eos>`` per line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from svdtrain.bounds import read_file

LEVELS = ("char", "word", "byte")
EOS = "<eos>"
WORD_FILES = ("train.txt", "valid.txt", "test.txt")


@dataclass(eq=False, repr=False)
class Corpus:
    """A tokenized corpus: three 1-D ``torch.long`` splits and the vocabulary (index -> token).

    ``test`` is the ``valid`` tensor itself when the source has no test split (character and
    byte level). Byte-level vocabulary entries are ``chr(byte)`` (the Latin-1 view of each byte);
    byte-level text is decoded as UTF-8 with ``errors="replace"``.

    Example:
        >>> corpus = Corpus(torch.tensor([0, 1, 1]), torch.tensor([1]), torch.tensor([1]), ["a", "b"], "char")
        >>> corpus.decode(corpus.encode("abba"))
        'abba'
    """

    train: torch.Tensor  # (N_train,) long
    valid: torch.Tensor  # (N_valid,) long
    test: torch.Tensor  # (N_test,) long; may be `valid` itself
    vocab: list[str]  # index -> token string
    level: str  # "char" | "word" | "byte"
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.level == "byte" and len(self.vocab) != 256:
            raise ValueError(f"a byte-level vocabulary has 256 entries, got {len(self.vocab)}")
        self._index = {token: i for i, token in enumerate(self.vocab)}
        if len(self._index) != len(self.vocab):
            raise ValueError(f"vocabulary has duplicate tokens ({len(self.vocab) - len(self._index)} repeats)")
        for name in ("train", "valid", "test"):
            tokens = getattr(self, name)
            if not isinstance(tokens, torch.Tensor) or tokens.ndim != 1 or tokens.dtype != torch.long:
                got = f"{tokens.dtype} {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else type(tokens)
                raise ValueError(f"{name} must be a 1-D torch.long tensor, got {got}")
            if len(tokens) and (int(tokens.min()) < 0 or int(tokens.max()) >= len(self.vocab)):
                raise ValueError(f"{name} has token ids outside 0..{len(self.vocab) - 1}")

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(getattr(self, name)):,}" for name in ("train", "valid", "test"))
        return f"Corpus(level={self.level!r}, vocab={len(self.vocab):,}, {sizes})"

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (N,) long of ``text``: its characters, its UTF-8 bytes, or its whitespace-split
        words (no ``<eos>`` is added; the literal token ``<eos>`` maps to its id).

        Raises:
            ValueError: a character or word that is not in the vocabulary.
        """
        if self.level == "byte":
            return _bytes_to_tensor(text.encode("utf-8"))
        pieces = text.split() if self.level == "word" else text
        ids = [self._index.get(piece, -1) for piece in pieces]
        if -1 in ids:
            position = ids.index(-1)
            what = "word" if self.level == "word" else "character"
            raise ValueError(f"{what} {pieces[position]!r} (at {what} {position}) is not in the vocabulary")
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The text of token ids: characters joined, words joined with spaces, or bytes as UTF-8."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < len(self.vocab)]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary 0..{len(self.vocab) - 1}")
        if self.level == "byte":
            return bytes(ids).decode("utf-8", errors="replace")
        return (" " if self.level == "word" else "").join(self.vocab[i] for i in ids)


def _bytes_to_tensor(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).astype(np.int64))


def _read_bytes(path: Path) -> bytes:
    data = read_file(path, what="text file")  # a regular file: /dev/zero would be read until memory ran out
    if not data:
        raise ValueError(f"text file is empty: {path}")
    return data


def _read_utf8(path: Path) -> str:
    data = _read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path} is not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}, line {line}); "
            "use the byte level (load_byte_text) for arbitrary bytes"
        ) from None


def _check_split(split: float) -> float:
    if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0.0 < split < 1.0:
        raise ValueError(f"split must be a fraction in (0, 1), got {split!r}")
    return float(split)


def _split_at(tokens: torch.Tensor, split: float, path: Path, unit: str) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``int(n * split)`` tokens and the rest, as nanoGPT's prepare script cuts them."""
    n = len(tokens)
    cut = int(n * split)
    if cut == 0 or cut == n:
        side = "train" if cut == 0 else "valid"
        raise ValueError(f"{path}: split={split} of {n} {unit} leaves an empty {side} split")
    return tokens[:cut].clone(), tokens[cut:].clone()


def load_char_text(path: str | Path, *, split: float = 0.9) -> Corpus:
    """Character-level corpus of a UTF-8 text file (e.g. tinyshakespeare.txt).

    The vocabulary is the sorted set of the whole file's characters; the first ``split`` of the
    characters is ``train``, the rest ``valid``, and ``test`` is ``valid``. The file is decoded
    exactly as stored (no newline translation).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an empty file, a file that is not UTF-8, ``split`` not in (0, 1), or a split
            that leaves no characters on one side.

    Example:
        >>> corpus = load_char_text("tinyshakespeare.txt")  # doctest: +SKIP
        >>> len(corpus.vocab), len(corpus.train), len(corpus.valid)  # doctest: +SKIP
        (65, 1003854, 111540)
    """
    split, path = _check_split(split), Path(path)
    text = _read_utf8(path)
    # Sorted characters are sorted code points, so one searchsorted maps the whole text to ids.
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    vocab_points = np.unique(points)
    ids = torch.from_numpy(np.searchsorted(vocab_points, points).astype(np.int64))
    train, valid = _split_at(ids, split, path, "characters")
    return Corpus(train, valid, valid, [chr(p) for p in vocab_points.tolist()], "char")


def load_byte_text(path: str | Path, *, split: float = 0.9) -> Corpus:
    """Byte-level corpus of any file: its bytes are the tokens 0..255 (a 256-entry vocabulary),
    for models built from a config without a tokenizer. Split as :func:`load_char_text`, by bytes.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an empty file, ``split`` not in (0, 1), or a split that leaves no bytes on one side.
    """
    split, path = _check_split(split), Path(path)
    train, valid = _split_at(_bytes_to_tensor(_read_bytes(path)), split, path, "bytes")
    return Corpus(train, valid, valid, [chr(b) for b in range(256)], "byte")


def _lines(text: str) -> list[str]:
    """The lines a text-mode file iterates over (universal newlines), without their line ends."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _word_ids(path: Path, index: dict[str, int], *, grow: bool) -> torch.Tensor:
    """Ids of ``path``'s words plus ``<eos>`` per line; ``grow`` adds new words to ``index``
    (the training file), otherwise a word missing from ``index`` is an error."""
    ids: list[int] = []
    first_unknown, unknown = None, 0
    for number, line in enumerate(_lines(_read_utf8(path)), start=1):
        for word in line.split() + [EOS]:
            if grow:
                ids.append(index.setdefault(word, len(index)))
            elif word in index:
                ids.append(index[word])
            else:
                first_unknown, unknown = first_unknown or (word, number), unknown + 1
    if first_unknown is not None:
        more = f" ({unknown - 1} more unknown tokens in the file)" if unknown > 1 else ""
        raise ValueError(
            f"{path} line {first_unknown[1]}: token {first_unknown[0]!r} is not in the vocabulary of "
            f"train.txt{more}; map rare words to <unk> as WikiText-2 and PTB do"
        )
    return torch.tensor(ids, dtype=torch.long)


def load_word_corpus(directory: str | Path) -> Corpus:
    """Word-level corpus of a WikiText-2 / PTB folder holding ``train.txt``, ``valid.txt``, ``test.txt``.

    Each line becomes its whitespace-split words followed by ``<eos>`` (blank lines give a lone
    ``<eos>``), as PyTorch's word_language_model example reads them. The vocabulary comes from
    ``train.txt`` alone, in order of first appearance.

    Raises:
        FileNotFoundError: the folder or one of its three files is missing.
        ValueError: an empty file, a file that is not UTF-8, or a valid/test token that is not in
            the training vocabulary (naming the file, the token and its line number).

    Example:
        >>> corpus = load_word_corpus("data/wikitext-2")  # doctest: +SKIP
        >>> len(corpus.vocab), len(corpus.train)  # doctest: +SKIP
        (33278, 2088628)
    """
    directory = Path(directory)
    if not directory.is_dir():
        kind = "is a file, not a folder" if directory.exists() else "not found"
        raise FileNotFoundError(f"word corpus folder {kind}: {directory} (expected {', '.join(WORD_FILES)})")
    missing = [name for name in WORD_FILES if not (directory / name).exists()]  # the reader names a non-file
    if missing:
        raise FileNotFoundError(f"word corpus folder {directory} lacks {', '.join(missing)}")
    index: dict[str, int] = {}
    train = _word_ids(directory / "train.txt", index, grow=True)
    valid = _word_ids(directory / "valid.txt", index, grow=False)
    test = _word_ids(directory / "test.txt", index, grow=False)
    return Corpus(train, valid, test, list(index), "word")
