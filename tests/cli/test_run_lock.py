"""A run folder is held by the one process writing to it."""

import json

from svdtrain.cli import main
from svdtrain.pipeline.run_folder import RunFolder

TINY = ["--preset", "smoke", "--start-epochs", "1", "--svd-epochs", "1", "--finetune-epochs", "1",
        "--train-limit", "128", "--test-limit", "64"]


def test_a_live_folder_refuses_a_second_run_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["start", *TINY, "--out", str(out)]) == 0  # an unfinished run, as a live one is
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    with RunFolder(out).locked():  # as a live run holds it
        for extra in (["--overwrite"], ["--resume"]):
            assert main(["run", *TINY, "--out", str(out), *extra]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "is in use by another svdtrain process" in err
        assert main(["start", *TINY, "--out", str(out), "--resume"]) == 2
        assert "is in use" in capsys.readouterr().err
        after = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file() and path.name != ".svdtrain.lock"}
        assert after == before  # nothing of the live run's was touched
    assert main(["run", *TINY, "--out", str(out), "--overwrite"]) == 0  # free again once it ends
    assert json.loads((out / "report.json").read_text())["compact"]["macs"] > 0
    assert not (out / ".svdtrain.lock").exists()


def test_a_lock_file_left_by_a_killed_process_does_not_hold_the_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".svdtrain.lock").write_text("12345")  # its process is gone: the kernel holds no lock
    assert main(["run", *TINY, "--out", str(out)]) == 0
