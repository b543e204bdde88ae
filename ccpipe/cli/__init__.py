"""The ``ccpipe`` command line: one module per command group, imported only when its command runs.

Every command has ``--help`` showing its own flags; flags are spelled with underscores, the
hyphenated spelling is accepted too (``ccpipe.cli.common``).
"""

from __future__ import annotations

import logging
import os
import sys

from ccpipe.crypto import DecryptionError
from ccpipe.errors import CcpipeError

USAGE = """usage: ccpipe COMMAND [ARGS]

commands:
  fixtures   generate a deterministic fixture corpus with ground truth
  batch      run the batch pipeline: input files -> encrypted regional Parquet
  stream     run the streaming pipeline from Kafka or a watched folder, on Prism
  eval-pii   measure PII detection against planted ground truth
  report     rebuild a batch run's report (HTML and JSON) from its manifest and output
  graph      draw the batch or stream pipeline's Beam graph as SVG
  tenants    import or list tenants of the control plane
  keys       keystore and key lifecycle (init, list, rotate, shred --all | --before DATE);
             tenant KEKs in --kms local (default) or openbao://HOST:PORT
  grants     operator access grants (add, revoke, list)
  decrypt    decrypt one field of one row (access-checked, audited)
  retention  apply the retention rules (run [--dry-run] [--as-of DATE])
  dsar       data-subject requests (open, confirm-identity, run, list)
  audit      verify or list the hash-chained audit log
  transparency  government request ledger and semiannual report (add, authority, decide, disclose,
             notify, close, list, report, fixtures)

Run 'ccpipe COMMAND --help' for a command's flags.
"""


# Command name -> "module:function"; each command module is imported only when it runs.
COMMANDS = {
    "fixtures": "fixtures.generate:main",
    "batch": "ccpipe.cli.batch:main",
    "stream": "ccpipe.cli.stream:main",
    "eval-pii": "ccpipe.pii.evaluate:main",
    "report": "ccpipe.cli.report:main",
    "graph": "ccpipe.cli.graph:main",
    "transparency": "ccpipe.cli.transparency:main",
    **{name: f"ccpipe.cli.governance:{name}_main"
       for name in ("tenants", "keys", "grants", "decrypt", "retention", "dsar", "audit")},
}


# Beam logs this WARNING whenever it is imported (its optional GCP client is not installed): not the user's concern.
BEAM_IMPORT_NOTICE = "apitools not found"


def _command(name: str):
    import importlib

    module, _, function = COMMANDS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def _not_import_notice(record: logging.LogRecord) -> bool:
    return not (record.name == "root" and str(record.msg).startswith(BEAM_IMPORT_NOTICE))


def user_path_error(err: OSError, argv: list[str]) -> str | None:
    """One line for an OSError about a path the user named on the command line, else None.

    ``--in /x/b.bin`` (or ``--in=/x/b.bin``, or a positional ``/x/b.bin``) that does not exist reads
    ``--in '/x/b.bin': No such file or directory``. An error about any other path is not the user's
    mistake and is left to surface as the bug it is.
    """
    if err.filename is None or isinstance(err.filename, int):
        return None
    named = os.path.normpath(os.fsdecode(err.filename))
    why = err.strerror or type(err).__name__
    for i, token in enumerate(argv):
        flag, eq, value = token.partition("=") if token.startswith("--") else ("", "", token)
        if not value or os.path.normpath(value) != named:
            continue
        if not eq and i > 0 and argv[i - 1].startswith("-") and argv[i - 1] != "--":
            flag = argv[i - 1]
        return f"{flag} {value!r}: {why}" if flag else f"{value!r}: {why}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ccpipe`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(f"ccpipe {version('ccpipe')}")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_import_notice)
    for name in ("ccpipe", "pipelines", "transforms"):
        logging.getLogger(name).setLevel(logging.INFO)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        near = difflib.get_close_matches(command, sorted(COMMANDS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        print(f"ccpipe: unknown command {command!r}{hint}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return _command(command)(rest)
    except (CcpipeError, DecryptionError) as err:
        print(f"ccpipe {command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        line = user_path_error(err, rest)
        if line is None:
            raise
        print(f"ccpipe {command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ccpipe {command}: interrupted", file=sys.stderr)
        return 130
