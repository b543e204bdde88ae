"""Every user mistake ends in one clear line on stderr and a non-zero exit, never a traceback.

Each case runs the console script as a user does (``python -m ccpipe.cli``, network blocked but for
loopback, ``$CCPIPE_HOME`` in a temporary folder). The rule, the same for every command:

* a mistake found after the flags are parsed: stderr is exactly one line, ``ccpipe CMD: error: ...``;
* a flag the parser rejects (unknown flag, a value of the wrong type, a missing required flag):
  argparse's usage block, then that one ``ccpipe CMD: error: ...`` line as the last line.

Unreachable endpoints (PostgreSQL, OpenBao, Kafka) are a loopback port that accepts connections
and never answers: the command must give up within its connect timeout, not hang.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "fixtures" / "sample"
CALLS = SAMPLE / "input" / "calls.jsonl"
TENANTS = SAMPLE / "tenants.yaml"
NETBLOCK = str(Path(__file__).parent / "netblock")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CCPIPE_MASTER_KEY", "BAO_TOKEN")}
    env.update(
        CCPIPE_HOME=str(home),
        CCPIPE_ACTOR="ann",
        CCPIPE_ROLE="operator",
        CCPIPE_BLOCK_NETWORK="1",
        PYTHONPATH=os.pathsep.join([NETBLOCK, str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def ccpipe(home: Path, cwd: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccpipe.cli", *argv], env=_env(home), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def silent_port():
    """A loopback port that accepts TCP connections (backlog) and never answers them."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture(scope="module")
def keys_home(tmp_path_factory) -> Path:
    """A $CCPIPE_HOME with a keystore, made by 'ccpipe keys init'."""
    home = tmp_path_factory.mktemp("keys") / "home"
    done = ccpipe(home, home.parent, "keys", "init")
    assert done.returncode == 0, done.stderr
    return home


@pytest.fixture
def files(tmp_path) -> Path:
    """Files the cases name: broken ones, keys that do not fit, a folder."""
    (tmp_path / "broken.yaml").write_text("tenants: [unclosed\n  - x: : :\n")
    (tmp_path / "scalar.yaml").write_text("42\n")
    (tmp_path / "folder").mkdir()
    for name, text in {"garbage.key": "not a key!\n", "other.key": base64.b64encode(b"o" * 32).decode() + "\n",
                       "token": "root-token\n", "open.key": base64.b64encode(b"k" * 32).decode() + "\n"}.items():
        (tmp_path / name).write_text(text)
        os.chmod(tmp_path / name, 0o600)
    os.chmod(tmp_path / "open.key", 0o644)
    (tmp_path / "bundle.bin").write_bytes(b"not a bundle")
    (tmp_path / "notadb.db").write_bytes(b"this is not SQLite" * 64)
    os.chmod(tmp_path / "notadb.db", 0o600)
    return tmp_path


BATCH = ["batch", "--input", str(CALLS), "--tenants", str(TENANTS), "--output", "{t}/out"]

# (id, argv with {t} = the case's folder and {port} = a silent port, expected fragment of the error line,
#  whether argparse rejects it (usage block above the line), whether it needs an initialized keystore)
CASES = [
    ("unknown_flag", ["batch", "--wokers", "2"], "unrecognized argument '--wokers'; did you mean --workers?", True,
     False),
    ("unknown_flag_governance", ["keys", "list", "--tenatn", "t"], "unrecognized argument '--tenatn'", True, False),
    ("bad_workers_type", [*BATCH, "--workers", "two"], "argument --workers: invalid int value: 'two'", True, False),
    ("bad_workers_zero", [*BATCH, "--workers", "0"], "--workers 0 must be at least 1", False, False),
    ("missing_required", ["decrypt", "--tenant", "t"], "the following arguments are required", True, False),
    ("empty_glob", ["batch", "--input", "{t}/nothing-*.jsonl", "--tenants", str(TENANTS), "--output", "{t}/out"],
     "--input '{t}/nothing-*.jsonl' matches no file", False, False),
    ("missing_input", ["batch", "--input", "{t}/missing.jsonl", "--tenants", str(TENANTS), "--output", "{t}/out"],
     "--input '{t}/missing.jsonl' matches no file", False, False),
    ("input_is_folder", ["batch", "--input", "{t}/folder", "--tenants", str(TENANTS), "--output", "{t}/out"],
     "--input '{t}/folder' names the folder", False, False),
    ("missing_tenants", ["batch", "--input", str(CALLS), "--tenants", "{t}/none.yaml", "--output", "{t}/out"],
     "tenants file '{t}/none.yaml' does not exist", False, False),
    ("malformed_tenants", ["batch", "--input", str(CALLS), "--tenants", "{t}/broken.yaml", "--output", "{t}/out"],
     "tenants file '{t}/broken.yaml' is unreadable", False, False),
    ("tenants_not_a_list", ["tenants", "import", "{t}/scalar.yaml"], "must hold a list of tenants", False, False),
    ("missing_pii_config", [*BATCH, "--pii_config", "{t}/none.yaml"], "PII configuration", False, False),
    ("bad_sink_flag", [*BATCH, "--sink", "nowhere"], "--sink 'nowhere' must be REGION=URI", False, False),
    ("bad_as_of", ["retention", "run", "--output", "{t}/out", "--as_of", "yesterday", "--dry_run"],
     "--as_of 'yesterday' must be an ISO date", False, True),
    ("missing_passphrase_file", ["dsar", "open-bundle", "--in", "{t}/bundle.bin", "--request", "r", "--out", "{t}/o",
                                 "--passphrase_file", "{t}/nopass"],
     "--passphrase_file '{t}/nopass' is not a readable file", False, False),
    ("missing_bundle", ["dsar", "open-bundle", "--in", "{t}/b.bin", "--request", "r", "--out", "{t}/o",
                        "--passphrase_file", "{t}/token"], "--in '{t}/b.bin': No such file or directory", False,
     False),
    ("missing_subject_file", ["dsar", "open", "--tenant", "t", "--kind", "access", "--subject_kind", "email",
                              "--subject_file", "{t}/nosubject"],
     "--subject_file '{t}/nosubject': No such file or directory", False, True),
    ("missing_disclosure_passphrase", ["transparency", "disclose", "--request", "r", "--tenant", "t",
                                       "--subject_kind", "email", "--subject", "s", "--output", "{t}/out",
                                       "--out", "{t}/bundle", "--passphrase_file", "{t}/nopass"],
     "'{t}/nopass': No such file or directory", False, True),
    ("no_keystore", ["keys", "list", "--keystore", "{t}/none.db"], "no keystore at {t}/none.db", False, False),
    ("missing_master_key", ["keys", "list", "--master_key_file", "{t}/none.key"], "no master key", False, True),
    ("garbage_master_key", ["keys", "list", "--master_key_file", "{t}/garbage.key"],
     "does not hold a ccpipe master key", False, True),
    ("other_master_key", ["keys", "rotate", "--tenant", "t1", "--master_key_file", "{t}/other.key"],
     "the master key does not match the keystore", False, True),
    ("master_key_readable_by_others", [*BATCH, "--master_key_file", "{t}/open.key", "--keystore", "{t}/k.db"],
     "must be private to its owner", False, False),
    ("bad_kms", ["keys", "list", "--kms", "vault://x"], "--kms 'vault://x' is not a key manager", False, True),
    ("postgres_refused", ["tenants", "list", "--control_plane", "postgresql://u:pw@127.0.0.1:1/db"],
     "cannot connect to the control plane at postgresql://u:***@127.0.0.1:1/db", False, False),
    ("postgres_silent", [*BATCH, "--control_plane", "postgresql://u:pw@127.0.0.1:{port}/db"],
     "cannot connect to the control plane at postgresql://u:***@127.0.0.1:{port}/db", False, False),
    ("openbao_refused", ["keys", "init", "--keystore", "{t}/bao/k.db",
                         "--kms", "openbao+http://127.0.0.1:1?token_file={t}/token"],
     "cannot reach OpenBao at http://127.0.0.1:1", False, False),
    ("openbao_silent", ["keys", "init", "--keystore", "{t}/bao/k.db",
                        "--kms", "openbao+http://127.0.0.1:{port}?token_file={t}/token&timeout=2"],
     "cannot reach OpenBao at http://127.0.0.1:{port}", False, False),
    ("kafka_silent", ["stream", "--source", "kafka://127.0.0.1:{port}/calls?group=g&connect_timeout=3",
                      "--tenants", str(TENANTS), "--output", "{t}/out"],
     "Kafka at 127.0.0.1:{port} did not answer within 3 s", False, False),
    ("stream_bad_source", ["stream", "--source", "ftp://x", "--tenants", str(TENANTS), "--output", "{t}/out"],
     "source 'ftp://x' must be kafka://HOST:PORT/TOPIC?group=G or watch://DIR", False, False),
    ("graph_bad_out", ["graph", "batch", "--out", "{t}/graph.png"], "--out '{t}/graph.png' must end in .svg or .dot",
     False, False),
    ("graph_unknown_pipeline", ["graph", "nightly", "--out", "{t}/g.svg"], "argument pipeline: invalid choice", True,
     False),
    ("unknown_log_folder", [*BATCH, "--log_file", "{t}/no/such/run.log"],
     "--log_file '{t}/no/such/run.log': the folder '{t}/no/such' does not exist", False, False),
    ("keystore_not_a_database", ["keys", "list", "--keystore", "{t}/notadb.db"],
     "cannot open the keystore at {t}/notadb.db: DatabaseError: file is not a database", False, False),
    ("keystore_is_a_folder", ["keys", "list", "--keystore", "{t}/folder"],
     "cannot open the keystore at {t}/folder: OperationalError: unable to open database file", False, False),
]


@pytest.mark.parametrize(("argv", "fragment", "usage", "needs_keys"),
                         [pytest.param(*c[1:5], id=c[0], marks=c[5:]) for c in CASES])
def test_user_mistake_is_one_clear_line(argv, fragment, usage, needs_keys, files, keys_home, silent_port, tmp_path):
    home = tmp_path / "home"
    if needs_keys:
        shutil.copytree(keys_home, home)
    fill = {"t": str(files), "port": str(silent_port)}
    done = ccpipe(home, files, *[a.format(**fill) for a in argv], timeout=240)
    command = argv[0]
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert lines, "no error line"
    assert lines[-1].startswith(f"ccpipe {command}: error: "), done.stderr[-3000:]
    assert fragment.format(**fill) in lines[-1]
    if usage:
        assert lines[0].startswith(f"usage: ccpipe {command}"), done.stderr[-3000:]
    else:
        assert len(lines) == 1, done.stderr[-3000:]
    assert "pw@" not in done.stderr  # a password in a URL never reaches the console


def test_user_path_error_names_the_flag():
    from ccpipe.cli import user_path_error

    err = FileNotFoundError(2, "No such file or directory", "/x/b.bin")
    assert user_path_error(err, ["open-bundle", "--in", "/x/b.bin"]) == "--in '/x/b.bin': No such file or directory"
    assert user_path_error(err, ["open-bundle", "--in=/x/./b.bin"]) == "--in '/x/./b.bin': No such file or directory"
    assert user_path_error(err, ["import", "/x/b.bin"]) == "'/x/b.bin': No such file or directory"
    # A path the user never named is not the user's mistake: left to surface as the bug it is.
    assert user_path_error(err, ["open-bundle", "--in", "/y/b.bin"]) is None
    assert user_path_error(OSError(28, "No space left on device"), ["--in", "/x"]) is None


def test_library_run_with_an_input_that_matches_nothing_is_a_config_error(tmp_path):
    """Not only the CLI: pipelines.batch.run says which input matched nothing (it used to fail the run with
    'run ... failed, no manifest written ...: OSError: No files found based on the file pattern ...')."""
    from ccpipe.errors import ConfigError
    from ccpipe.keystore import KeystoreConfig
    from ccpipe.tenants import load_tenants
    from pipelines.batch import BatchConfig, pipeline_options, run
    from transforms.route import SinkConfig

    config = BatchConfig(inputs=(str(tmp_path / "nothing-*.jsonl"),),
                         tenants=tuple(load_tenants(TENANTS).values()),
                         sinks=SinkConfig(default_root=str(tmp_path / "out")),
                         keystore=KeystoreConfig(str(tmp_path / "keys" / "keystore.db"),
                                                 str(tmp_path / "keys" / "master.key")),
                         run_id="nothing")
    with pytest.raises(ConfigError, match=r"^input '.*/nothing-\*\.jsonl' matches no file$"):
        run(config, pipeline_options("FnApiRunner", 1))
