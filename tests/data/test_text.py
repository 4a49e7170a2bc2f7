"""Language-model corpora and token batches, on small files the tests write themselves."""

from pathlib import Path

import pytest
import torch

from svdtrain.data import Corpus, TokenBatches, load_byte_text, load_char_text, load_word_corpus

SHAKESPEARE = Path(__file__).parents[3] / "shared" / "data" / "tinyshakespeare.txt"


def _write_words(folder, train="the cat sat\non the mat\n", valid="the mat\n\ncat sat on\n", test="on the cat\n"):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train.txt", train), ("valid.txt", valid), ("test.txt", test)):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# Character level


def test_char_vocab_is_sorted_characters_and_split_is_first_90_percent(tmp_path):
    text = "hello world, ünïcode!\n" * 5  # 110 characters, more than 110 bytes
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    corpus = load_char_text(path)
    assert corpus.level == "char" and corpus.vocab == sorted(set(text))
    assert len(corpus.train) == 99 and len(corpus.valid) == 11  # int(110 * 0.9) = 99
    assert corpus.test is corpus.valid
    assert corpus.decode(corpus.train) == text[:99] and corpus.decode(corpus.valid) == text[99:]
    assert corpus.train.dtype == torch.long and corpus.train.ndim == 1


def test_char_split_fraction_is_honoured(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij", encoding="utf-8")
    corpus = load_char_text(path, split=0.3)
    assert corpus.decode(corpus.train) == "abc" and corpus.decode(corpus.valid) == "defghij"


def test_char_text_keeps_crlf_as_stored(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"ab\r\ncd\r\n")
    corpus = load_char_text(path, split=0.5)
    assert "\r" in corpus.vocab and corpus.decode(torch.cat([corpus.train, corpus.valid])) == "ab\r\ncd\r\n"


def test_char_encode_decode_round_trip_and_unknown_character(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("to be or not to be\n", encoding="utf-8")
    corpus = load_char_text(path)
    ids = corpus.encode("not to be")
    assert ids.dtype == torch.long and ids.tolist() == [corpus.vocab.index(c) for c in "not to be"]
    assert corpus.decode(ids) == "not to be" and corpus.decode(ids.tolist()) == "not to be"
    with pytest.raises(ValueError, match=r"character 'z' \(at character 4\) is not in the vocabulary"):
        corpus.encode("bet z")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        corpus.decode([len(corpus.vocab)])


def test_real_tinyshakespeare_matches_nanogpt():
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} is absent (the shared data folder is not checked out beside the repo)")
    corpus = load_char_text(SHAKESPEARE)
    n = len(SHAKESPEARE.read_text(encoding="utf-8"))
    assert n == 1_115_394 and len(corpus.vocab) == 65
    assert len(corpus.train) == int(n * 0.9) == 1_003_854 and len(corpus.valid) == n - int(n * 0.9) == 111_540
    assert corpus.decode(corpus.train[:14]) == "First Citizen:"


# Word level


def test_words_get_eos_per_line_and_vocab_in_order_of_first_appearance(tmp_path):
    corpus = load_word_corpus(_write_words(tmp_path / "wt"))
    assert corpus.level == "word"
    assert corpus.vocab == ["the", "cat", "sat", "<eos>", "on", "mat"]
    assert corpus.decode(corpus.train) == "the cat sat <eos> on the mat <eos>"
    assert corpus.decode(corpus.valid) == "the mat <eos> <eos> cat sat on <eos>"  # blank line: a lone <eos>
    assert corpus.decode(corpus.test) == "on the cat <eos>"


def test_word_lines_follow_universal_newlines_and_any_whitespace(tmp_path):
    folder = _write_words(tmp_path / "wt", valid="a\n", test="e\n")
    (folder / "train.txt").write_bytes(b"a  b\tc\r\nd\re")  # no final newline: still a line
    corpus = load_word_corpus(folder)
    assert corpus.decode(corpus.train) == "a b c <eos> d <eos> e <eos>"


def test_word_encode_decode_round_trip(tmp_path):
    corpus = load_word_corpus(_write_words(tmp_path / "wt"))
    ids = corpus.encode("the mat <eos> on")
    assert ids.tolist() == [0, 5, 3, 4] and corpus.decode(ids) == "the mat <eos> on"
    with pytest.raises(ValueError, match="word 'dog'"):
        corpus.encode("the dog")


@pytest.mark.parametrize("split", ["valid.txt", "test.txt"])
def test_unknown_word_names_file_token_and_line(tmp_path, split):
    folder = _write_words(tmp_path / "wt")
    (folder / split).write_text("the cat\n\non the dog\nthe dog bird\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{split} line 3: token 'dog' is not in .*\(2 more unknown tokens"):
        load_word_corpus(folder)


def test_word_corpus_missing_folder_or_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found: .*nowhere"):
        load_word_corpus(tmp_path / "nowhere")
    folder = _write_words(tmp_path / "wt")
    (folder / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="lacks test.txt"):
        load_word_corpus(folder)
    with pytest.raises(FileNotFoundError, match="is a file, not a folder"):
        load_word_corpus(folder / "train.txt")


def test_word_corpus_empty_or_non_utf8_file(tmp_path):
    folder = _write_words(tmp_path / "wt", valid="")
    with pytest.raises(ValueError, match="empty: .*valid.txt"):
        load_word_corpus(folder)
    (folder / "valid.txt").write_text("the cat\n", encoding="utf-8")
    (folder / "train.txt").write_bytes(b"the cat\nsat \xff on\n")
    message = r"train.txt is not valid UTF-8 \(byte 0xff at offset 12, line 2\).*byte level"
    with pytest.raises(ValueError, match=message):
        load_word_corpus(folder)


# Byte level


def test_bytes_are_tokens_and_decode_replaces_broken_sequences(tmp_path):
    data = "héllo wörld".encode("utf-8") * 2  # 26 bytes
    path = tmp_path / "t.bin"
    path.write_bytes(data)
    corpus = load_byte_text(path, split=0.5)
    assert corpus.level == "byte" and len(corpus.vocab) == 256 and corpus.vocab[65] == "A"
    assert torch.cat([corpus.train, corpus.valid]).tolist() == list(data) and len(corpus.train) == 13
    assert corpus.encode("hé").tolist() == [104, 0xC3, 0xA9] and corpus.decode(corpus.encode("wörld")) == "wörld"
    assert corpus.decode([104, 0xC3]) == "h\ufffd"  # half a character: replaced, not an error


def test_byte_level_reads_files_that_are_not_utf8(tmp_path):
    path = tmp_path / "t.bin"
    path.write_bytes(bytes(range(256)) * 2)  # byte 10 is a newline
    corpus = load_byte_text(path)
    assert corpus.train[:256].tolist() == list(range(256))
    with pytest.raises(ValueError, match=r"not valid UTF-8 \(byte 0x80 at offset 128, line 2\)"):
        load_char_text(path)


# Bad inputs for the file loaders


@pytest.mark.parametrize("load", [load_char_text, load_byte_text])
def test_missing_empty_and_directory_paths(tmp_path, load):
    with pytest.raises(FileNotFoundError, match="not found: .*absent.txt"):
        load(tmp_path / "absent.txt")
    with pytest.raises(ValueError, match=f"^text file {tmp_path} is a directory, not a regular file$"):
        load(tmp_path)
    with pytest.raises(ValueError, match="^text file /dev/zero is a character device, not a regular file$"):
        load("/dev/zero")  # read, it would fill the memory
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty: .*empty.txt"):
        load(tmp_path / "empty.txt")


@pytest.mark.parametrize("load", [load_char_text, load_byte_text])
@pytest.mark.parametrize("split", [0, 1, 1.5, -0.1, True, "0.9"])
def test_split_outside_open_unit_interval(tmp_path, load, split):
    (tmp_path / "t.txt").write_text("abcdefghij", encoding="utf-8")
    with pytest.raises(ValueError, match=r"split must be a fraction in \(0, 1\)"):
        load(tmp_path / "t.txt", split=split)


def test_split_that_leaves_a_side_empty(tmp_path):
    (tmp_path / "t.txt").write_text("abc", encoding="utf-8")
    with pytest.raises(ValueError, match="t.txt: split=0.3 of 3 characters leaves an empty train split"):
        load_char_text(tmp_path / "t.txt", split=0.3)
    with pytest.raises(ValueError, match="split=0.1 of 3 bytes leaves an empty train split"):
        load_byte_text(tmp_path / "t.txt", split=0.1)
    corpus = load_char_text(tmp_path / "t.txt", split=0.34)  # int(1.02) = 1 character is enough
    assert len(corpus.train) == 1 and len(corpus.valid) == 2


def test_corpus_rejects_bad_tensors_and_levels():
    ok = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="level must be one of"):
        Corpus(ok, ok, ok, ["a", "b"], "sentencepiece")
    with pytest.raises(ValueError, match="valid must be a 1-D torch.long tensor"):
        Corpus(ok, ok.int(), ok, ["a", "b"], "char")
    with pytest.raises(ValueError, match="test has token ids outside 0..1"):
        Corpus(ok, ok, torch.tensor([2]), ["a", "b"], "char")


# Token batches


def test_targets_are_inputs_shifted_by_one_and_blocks_tile_the_text():
    tokens = torch.arange(100, 123)  # 23 tokens, length 5: 4 blocks (0..20), tail 21..22 dropped
    batches = TokenBatches(tokens, 3, length=5)
    got = list(batches)
    assert len(batches) == len(got) == 2 and [x.shape for x, _ in got] == [(3, 5), (1, 5)]  # partial batch kept
    inputs, targets = torch.cat([x for x, _ in got]), torch.cat([y for _, y in got])
    assert inputs.dtype == targets.dtype == torch.long
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    assert torch.equal(targets, tokens[1:21].view(4, 5)) and torch.equal(inputs, tokens[:20].view(4, 5))
    assert torch.equal(inputs[1:, 0], targets[:-1, -1])  # stride `length`: each block starts at the last target


def test_exact_fit_keeps_every_block():
    batches = TokenBatches(torch.arange(11), 2, length=5)  # 2 blocks of 6 tokens, stride 5
    (x, y), = list(batches)
    assert x.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and y[-1, -1] == 10


def test_shuffle_is_deterministic_per_seed_and_epoch_and_differs_across_epochs():
    tokens = torch.arange(401)
    batches = TokenBatches(tokens, 4, length=10, shuffle=True, seed=3)

    def epoch(e, b=batches):
        b.set_epoch(e)
        return [x[:, 0].tolist() for x, _ in b]

    first = epoch(1)
    assert first == epoch(1) == epoch(1, TokenBatches(tokens, 4, length=10, shuffle=True, seed=3))
    assert first != epoch(2)
    assert first != epoch(1, TokenBatches(tokens, 4, length=10, shuffle=True, seed=4))
    assert sorted(sum(first, [])) == list(range(0, 400, 10))  # a permutation of the 40 blocks
    assert sum(epoch(0, TokenBatches(tokens, 4, length=10)), []) == list(range(0, 400, 10))


def test_batches_ignores_augment_and_places_on_device():
    batches = TokenBatches(torch.arange(50, dtype=torch.int32), 2, length=4, device="cpu", shuffle=True)
    plain = [x for x, _ in batches.batches(False)]
    augmented = [x for x, _ in batches.batches(True)]
    assert all(torch.equal(a, b) for a, b in zip(plain, augmented)) and plain[0].dtype == torch.long


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_batches_on_gpu():
    x, y = next(iter(TokenBatches(torch.arange(50), 2, length=4, device="cuda", shuffle=True)))
    assert x.is_cuda and y.is_cuda and torch.equal(y[:, :-1], x[:, 1:])


def test_limit_takes_a_fixed_subset_across_the_text():
    tokens = torch.arange(1001)
    batches = TokenBatches(tokens, 8, length=10, limit=20)
    again = TokenBatches(tokens, 8, length=10, limit=20, shuffle=True)
    starts = [x[:, 0].tolist() for x, _ in batches]
    assert len(batches) == 3 and len(sum(starts, [])) == 20
    assert sorted(sum(starts, [])) == sorted(sum([x[:, 0].tolist() for x, _ in again], []))
    assert max(sum(starts, [])) >= 500  # not the first 20 blocks (0..190)
    assert all(s % 10 == 0 for s in sum(starts, [])) and sum(starts, []) == sorted(sum(starts, []))  # text order
    assert len(TokenBatches(tokens, 8, length=10, limit=5000).starts) == 100


def test_text_shorter_than_one_block_names_the_split():
    with pytest.raises(ValueError, match=r"valid split has 5 tokens, fewer than one block of length \+ 1 = 6"):
        TokenBatches(torch.arange(5), 2, length=5, name="valid")
    TokenBatches(torch.arange(6), 2, length=5)  # exactly one block is enough


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"length": 0}, "length must be an integer >= 1"),
        ({"length": 2.5}, "length must be an integer >= 1"),
        ({"limit": 0}, "limit must be an integer >= 1"),
        ({"tokens": torch.zeros(2, 20, dtype=torch.long)}, "tokens must be a 1-D integer token tensor"),
        ({"tokens": torch.rand(20)}, "tokens must be a 1-D integer token tensor"),
        ({"tokens": torch.ones(20, dtype=torch.bool)}, "tokens must be a 1-D integer token tensor"),
    ],
)
def test_token_batches_reject_bad_arguments(kwargs, message):
    args = {"tokens": torch.arange(20), "batch_size": 2, "length": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        TokenBatches(args.pop("tokens"), args.pop("batch_size"), **args)


def test_corpus_splits_feed_token_batches(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghijklmnopqrst" * 5, encoding="utf-8")  # 100 chars: 90 train, 10 valid
    corpus = load_char_text(path)
    x, y = next(iter(TokenBatches(corpus.valid, 1, length=9, name="valid")))
    assert corpus.decode(x[0]) + corpus.decode(y[0, -1:]) == ("abcdefghijklmnopqrst" * 5)[90:]
    with pytest.raises(ValueError, match="valid split has 10 tokens"):
        TokenBatches(corpus.valid, 1, length=10, name="valid")
