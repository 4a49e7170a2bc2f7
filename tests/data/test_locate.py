"""Where a run's input files are looked up: the current directory, $SVDTRAIN_DATA's folders, the cache
(``elsewhere``, tests/conftest.py: a fresh working directory and home)."""

import os

import pytest

from svdtrain.data.locate import data_folders, locate


def test_a_relative_path_is_looked_up_here_then_in_each_data_folder_then_the_cache(elsewhere, monkeypatch):
    a, b, cache = elsewhere / "a", elsewhere / "b", elsewhere / "home/.cache/svdtrain/data"
    for folder in (a, b, cache):
        folder.mkdir(parents=True)
    monkeypatch.setenv("SVDTRAIN_DATA", f"{a}{os.pathsep}{b}")
    assert data_folders() == [a, b, cache]
    (cache / "t.txt").write_text("cache")
    assert locate("t.txt", what="text") == cache / "t.txt"
    (b / "t.txt").write_text("b")
    assert locate("t.txt", what="text") == b / "t.txt"
    (a / "t.txt").write_text("a")
    assert locate("t.txt", what="text") == a / "t.txt"
    (elsewhere / "work/t.txt").write_text("here")
    assert locate("t.txt", what="text").read_text() == "here"
    (b / "sub").mkdir()
    (b / "sub/u.txt").write_text("u")
    assert locate("sub/u.txt", what="text") == b / "sub/u.txt"  # a relative path with folders too


def test_an_absolute_or_dotted_path_is_used_as_given(elsewhere, monkeypatch):
    monkeypatch.setenv("SVDTRAIN_DATA", str(elsewhere))
    (elsewhere / "t.txt").write_text("in the data folder")
    assert str(locate("./t.txt", what="text")) == "t.txt"  # not looked up: its reader says it is missing
    assert str(locate("/no/such/t.txt", what="text")) == "/no/such/t.txt"
    assert locate("~/t.txt", what="text") == elsewhere / "home/t.txt"


def test_a_download_goes_to_the_first_data_folder(elsewhere, monkeypatch):
    assert locate("cifar10", what="CIFAR-10", create=True) == elsewhere / "home/.cache/svdtrain/data/cifar10"
    monkeypatch.setenv("SVDTRAIN_DATA", str(elsewhere / "d"))
    assert locate("cifar10", what="CIFAR-10", create=True) == elsewhere / "d/cifar10"


def test_nowhere_is_one_line_naming_the_places_tried_and_the_variable(elsewhere, monkeypatch):
    with pytest.raises(FileNotFoundError) as error:
        locate("t.txt", what="data of dataset text_char", hint="give --data PATH")
    message = str(error.value)
    assert message.startswith("data of dataset text_char not found: t.txt is in none of ")
    assert f"{elsewhere / 'work'} (the current directory), {elsewhere / 'home/.cache/svdtrain/data'}" in message
    assert "($SVDTRAIN_DATA is not set); give --data PATH, or put it in a folder $SVDTRAIN_DATA names" in message
    assert len(message.splitlines()) == 1
    monkeypatch.setenv("SVDTRAIN_DATA", str(elsewhere / "d"))
    with pytest.raises(FileNotFoundError, match=f"in none of .*, {elsewhere / 'd'}, .*cache/svdtrain/data; give"):
        locate("t.txt", what="text", hint="give --data PATH")
