"""The shared CLI parser: one flag spelling (hyphen alias accepted), typos named, identity from the environment."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ccpipe.cli.common import Parser, add_actor_flags, add_store_flags, require_actor, table
from ccpipe.errors import ConfigError


def _parser() -> Parser:
    parser = Parser(prog="ccpipe test")
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run")
    run.add_argument("--as_of")
    add_store_flags(parser)
    return parser


def test_both_spellings_reach_the_same_flag():
    parser = _parser()
    hyphen = parser.parse_args(["--control-plane", "sqlite:///x.db", "--master-key-file=/k", "run", "--as-of", "2026"])
    underscore = parser.parse_args(["--control_plane", "sqlite:///x.db", "--master_key_file=/k", "run", "--as_of",
                                    "2026"])
    assert vars(hyphen) == vars(underscore) == {
        "action": "run", "as_of": "2026", "control_plane": "sqlite:///x.db", "keystore": None,
        "master_key_file": "/k", "kms": "",
    }


def test_a_typo_is_an_error_naming_the_nearest_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["--control-plan", "sqlite:///x.db", "run"])
    assert exit_.value.code == 2
    assert "unrecognized argument '--control-plan'; did you mean --control_plane?" in capsys.readouterr().err


def test_the_environment_identity_is_taken_whole_and_only_without_identity_flags():
    """A role left in the environment never joins an actor named on the command line (review finding)."""
    env = {"CCPIPE_ACTOR": "ops1", "CCPIPE_ROLE": "customer_admin", "CCPIPE_ACTOR_TENANT": "tnt-a"}
    parser = Parser(prog="ccpipe test")
    add_actor_flags(parser)
    args = parser.parse_args([])
    require_actor(args, env)
    assert (args.actor, args.role, args.actor_tenant) == ("ops1", "customer_admin", "tnt-a")
    args = parser.parse_args(["--actor", "bob"])
    with pytest.raises(ConfigError, match="--role is required"):
        require_actor(args, env)
    args = parser.parse_args(["--actor", "bob", "--role", "operator"])
    require_actor(args, env)
    assert (args.actor, args.role, args.actor_tenant) == ("bob", "operator", None)
    with pytest.raises(ConfigError, match=r"\$CCPIPE_ROLE 'admin' must be operator or customer_admin"):
        require_actor(parser.parse_args([]), {"CCPIPE_ACTOR": "ops1", "CCPIPE_ROLE": "admin"})


def test_abbreviations_are_refused(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--control", "sqlite:///x.db", "run"])
    assert "unrecognized argument '--control'" in capsys.readouterr().err


def test_batch_hands_beam_flags_on_in_the_spelling_beam_reads():
    """Before: --dask-client-address passed the check, then Beam discarded it (a local cluster started)."""
    from ccpipe.cli.batch import _parser, strict_args

    args, argv, beam = strict_args(_parser(), ["--input", "x", "--output", "/x", "--dask-client-address", "h:1",
                                               "--temp_location", "/x"])
    assert beam == ["--dask_client_address", "h:1", "--temp_location", "/x"]
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask.dask_runner import DaskOptions

    assert PipelineOptions(argv).view_as(DaskOptions).address == "h:1"
    assert args.output == "/x"  # a Beam flag's value equal to one of ours no longer takes ours away


def test_table_aligns_columns_under_a_header():
    assert table(["A", "LONGER"], [["x", 1], ["yyyy", None]]).splitlines() == ["A     LONGER", "x     1", "yyyy"]


def test_governance_commands_are_strict_and_list_with_headers(tmp_path):
    """Before the shared parser: '--tenatn' was argparse's bare 'unrecognized arguments', '--control_plane' refused."""
    env = {"CCPIPE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    cp = f"sqlite:///{tmp_path / 'cp.db'}"

    def ccpipe(*argv):
        return subprocess.run([sys.executable, "-m", "ccpipe.cli", *argv], capture_output=True, text=True, env=env,
                              timeout=120)

    typo = ccpipe("grants", "list", "--tenatn", "t1", "--control_plane", cp, "--actor", "a", "--role", "operator")
    assert typo.returncode == 2
    assert "unrecognized argument '--tenatn'; did you mean --tenant?" in typo.stderr
    listed = ccpipe("grants", "list", "--control_plane", cp, "--actor", "a", "--role", "operator")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["GRANT  TENANT  GRANTEE  GRANTED_BY  EXPIRES_AT  REVOKED_AT"]
    missing = ccpipe("grants", "list", "--control_plane", cp)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("ccpipe grants: error: --actor is required (or set the whole identity in "
                                      "$CCPIPE_ACTOR, $CCPIPE_ROLE)")
