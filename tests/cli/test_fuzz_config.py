"""Fuzzing the config surface: random flag values and random config files either resolve to
a valid config or fail with a ValueError (argparse's own error for a flag of the wrong type),
never another exception. SVDTRAIN_FUZZ_EXAMPLES sets how many cases (default 50)."""

import contextlib
import io
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svdtrain.cli import build_parser
from svdtrain.cli.options import config_from
from svdtrain.pipeline.config import OPTIONS, SECTIONS, resolve_config

EXAMPLES = int(os.environ.get("SVDTRAIN_FUZZ_EXAMPLES", "50"))
FLAGS = sorted(OPTIONS)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["-1", "0", "1e309", "nan", "inf", "-inf", "1.5", "true", "maybe", "1,2,x", "", "cuda:x"]),
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
keys = st.one_of(st.sampled_from(FLAGS + list(SECTIONS) + ["version"]), st.text(max_size=8))


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(FLAGS), texts), min_size=1, max_size=3))
def test_random_flag_values_are_a_config_or_a_named_error(tmp_path_factory, pairs):
    argv = ["run", "--out", str(tmp_path_factory.mktemp("out")), "--preset", "smoke"]
    for flag, text in pairs:
        argv += ["--" + flag.replace("_", "-"), text]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # argparse: usage line + one error line naming the flag
            assert exit_.code == 2 and "error: argument --" in stderr.getvalue()
            return
    try:
        config_from(args)
    except ValueError as error:
        assert str(error) and "\n" not in str(error)


@SETTINGS
@given(st.dictionaries(keys, values, max_size=4))
def test_random_config_files_are_a_config_or_a_named_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(content))
    try:
        resolve_config("smoke", path)
    except ValueError as error:
        assert str(error) and "\n" not in str(error)


@pytest.mark.parametrize("text", ["{", "- a\n- b\n", "a: [1\n", "\x00", "key: !!python/object:os.system x\n"])
def test_malformed_yaml_is_a_named_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError):
        resolve_config(None, path)
