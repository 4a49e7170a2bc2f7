"""RunFolder: the layout of a run folder, known in one place."""

import pytest

from svdtrain.cli import main
from svdtrain.pipeline.run_folder import RunFolder

TINY = ["--preset", "smoke", "--start-epochs", "1", "--svd-epochs", "1", "--finetune-epochs", "1",
        "--train-limit", "200", "--test-limit", "100", "--export-onnx", "true"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["run", "--out", str(out), *TINY]) == 0
    return RunFolder(out)


def test_it_knows_every_file_a_run_writes(finished):
    on_disk = {p for p in finished.path.rglob("*") if p.is_file()}
    assert on_disk and set(finished.written_files()) == on_disk
    assert all(finished.done(stage) for stage in ("start", "svd_train", "prune", "finetune", "export", "report"))
    assert finished.read_config()["svd_train"]["epochs"] == 1


def test_clear_removes_only_what_svdtrain_wrote(finished, tmp_path):
    import shutil

    copy = RunFolder(tmp_path / "copy")
    shutil.copytree(finished.path, copy.path)
    (copy.path / "notes.txt").write_text("mine")
    (copy.export / "extra.bin").write_bytes(b"mine too")
    copy.clear()
    assert sorted(p.relative_to(copy.path).as_posix() for p in copy.path.rglob("*")) == [
        "export", "export/extra.bin", "notes.txt"]


def test_prepare_guards_finished_and_unfinished_runs(finished, tmp_path):
    with pytest.raises(ValueError, match="already holds a finished run"):
        finished.prepare(overwrite=False, resume=False)
    partial = RunFolder(tmp_path / "partial")
    partial.path.mkdir()
    partial.config.write_text("{}")
    with pytest.raises(ValueError, match="holds an unfinished run"):
        partial.prepare(overwrite=False, resume=False)
    partial.prepare(overwrite=False, resume=True)
    partial.prepare(overwrite=True, resume=False)
    assert not partial.config.exists()
    afile = tmp_path / "a-file"
    afile.write_text("")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        RunFolder(afile).prepare(overwrite=True, resume=False)


def test_a_bad_config_json_is_one_line(tmp_path):
    folder = RunFolder(tmp_path)
    folder.config.write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        folder.read_config()
