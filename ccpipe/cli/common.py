"""What every ``ccpipe`` command shares: a strict parser, one flag spelling, the common flags.

Flags are spelled with underscores (``--control_plane``, ``--pii_config``), as Beam spells its own;
the hyphenated spelling (``--control-plane``) is accepted as a hidden alias everywhere. An unknown
flag is an error naming the nearest valid one: a mistyped flag is never silently ignored.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import difflib
import os
import sys
from pathlib import Path

from ccpipe.errors import ConfigError
from ccpipe.kms import KMS_FLAG_HELP

# Environment defaults for the identity flags, so an operator need not repeat them on every command.
ACTOR_ENV = {"actor": "CCPIPE_ACTOR", "role": "CCPIPE_ROLE", "actor_tenant": "CCPIPE_ACTOR_TENANT"}


def _all_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and of its sub-command parsers."""
    known: set[str] = set()
    for action in parser._actions:
        known.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                known |= _all_options(sub)
    return known


def canonical_flag(token: str, known: set[str]) -> str:
    """``token`` with its flag name in the canonical (underscore) spelling when that one is known."""
    if not token.startswith("--") or token == "--":
        return token
    name, eq, value = token.partition("=")
    if name not in known:
        underscored = "--" + name[2:].replace("-", "_")
        if underscored in known:
            name = underscored
    return name + eq + value


def nearest(flag: str, known: set[str]) -> str:
    """``; did you mean --x?`` for the valid flag nearest to ``flag``, or an empty string."""
    name = "--" + flag.split("=", 1)[0].lstrip("-").replace("-", "_")
    if name in known:  # a flag of another sub-command: naming it again would not help
        return f"; {name} is not a flag of this command"
    near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {near[0]}?" if near else ""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that accepts both flag spellings and names the nearest flag on a typo.

    Abbreviations are refused (``--out`` is not ``--output``): a flag means what it spells.
    """

    def __init__(self, *args, **kwargs) -> None:
        """As ArgumentParser, with ``allow_abbrev`` off unless asked for."""
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        """Parse with hyphenated flag names mapped to their underscore spelling."""
        args = list(sys.argv[1:] if args is None else args)
        known = _all_options(self)
        return super().parse_known_args([canonical_flag(a, known) for a in args], namespace)

    def parse_args(self, args=None, namespace=None):
        """Parse; an unknown flag is an error that names the nearest valid one.

        Flags are checked before parsing: argparse would otherwise take an unknown flag's value for
        a positional argument and report that instead ("invalid choice: 'sqlite:///x.db'").
        """
        args = list(sys.argv[1:] if args is None else args)
        known = _all_options(self)
        for token in args[: args.index("--")] if "--" in args else args:
            flag = canonical_flag(token, known).split("=", 1)[0]
            if flag.startswith("--") and flag not in known:
                self.error(f"unrecognized argument {token.split('=', 1)[0]!r}{nearest(token, known)}")
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            flag = next((u for u in unknown if u.startswith("-")), unknown[0])
            self.error(f"unrecognized argument {flag.split('=', 1)[0]!r}{nearest(flag, _all_options(self))}")
        return parsed


def add_store_flags(parser: argparse.ArgumentParser) -> None:
    """The control plane, keystore and key manager flags every governance command takes."""
    parser.add_argument("--control_plane", help="sqlite:///path or postgresql://... (default under $CCPIPE_HOME)")
    parser.add_argument("--keystore", help="keystore file (default $CCPIPE_HOME/keystore.db)")
    parser.add_argument("--master_key_file", help="master key file of --kms local (default $CCPIPE_HOME/master.key)")
    parser.add_argument(
        "--kms", default="",
        help=KMS_FLAG_HELP,
    )


def add_actor_flags(parser: argparse.ArgumentParser) -> None:
    """Who acts (recorded in the audit log); see ``require_actor`` for the environment's identity."""
    env_names = "$" + ", $".join(ACTOR_ENV.values())
    parser.add_argument("--actor", help=f"who acts (recorded in the audit log; default: the identity in {env_names})")
    parser.add_argument("--role", choices=["operator", "customer_admin"], help="operator or customer_admin")
    parser.add_argument("--actor_tenant", help="the tenant a customer_admin administers")


def require_actor(args: argparse.Namespace, environ=None) -> None:
    """ConfigError unless an identity is given: all on the command line, or all from the environment.

    The environment's identity ($CCPIPE_ACTOR, $CCPIPE_ROLE, $CCPIPE_ACTOR_TENANT) is taken as a
    whole and only when no identity flag is given, so a role left in a shell never joins an actor
    named on the command line (the audit log records whichever identity acted).
    """
    environ = os.environ if environ is None else environ
    if not any(getattr(args, name, None) for name in ACTOR_ENV) and environ.get(ACTOR_ENV["actor"]):
        for name, var in ACTOR_ENV.items():
            setattr(args, name, environ.get(var) or None)
        if args.role not in ("operator", "customer_admin"):
            raise ConfigError(f"${ACTOR_ENV['role']} {args.role!r} must be operator or customer_admin")
    for name in ("actor", "role"):
        if not getattr(args, name, None):
            raise ConfigError(f"--{name} is required (or set the whole identity in ${ACTOR_ENV['actor']}, "
                              f"${ACTOR_ENV['role']})")


def common(parser: argparse.ArgumentParser, actor: bool = True) -> None:
    """The store flags and, for commands that act, the identity flags."""
    add_store_flags(parser)
    if actor:
        add_actor_flags(parser)


def keystore_config(args):
    """The keystore configuration the flags name (defaults under $CCPIPE_HOME)."""
    from ccpipe.keystore import KeystoreConfig

    default = KeystoreConfig.default()
    return KeystoreConfig(
        args.keystore or default.path, args.master_key_file or default.master_key_file, kms=args.kms or ""
    )


def open_store(args):
    """The control plane the flags name; its audit key lives in the flags' keystore and key manager."""
    from ccpipe.controlplane.db import open_control_plane
    from ccpipe.keystore import prepare_sqlite_url

    prepare_sqlite_url(args.control_plane)  # $CCPIPE_HOME 0700, control.db 0600
    return open_control_plane(args.control_plane, keys=keystore_config(args))


def open_keys(args, create: bool = False):
    """The keystore the flags name."""
    from ccpipe.keystore import SqliteKeyStore

    return SqliteKeyStore(keystore_config(args), create=create)


def actor_of(args):
    """The audit-log identity of the flags (ConfigError when missing)."""
    from ccpipe.controlplane import audit

    require_actor(args)
    return audit.Actor(args.actor, args.role, args.actor_tenant)


def as_of(text: str | None) -> _dt.datetime:
    """``--as_of``: an ISO date or time (UTC unless it says otherwise); now when not given."""
    if not text:
        return _dt.datetime.now(_dt.UTC)
    try:
        value = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--as_of {text!r} must be an ISO date (YYYY-MM-DD) or time") from None
    return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)


def passphrase(path: str | None) -> str:
    """A bundle passphrase from a file (first line) or asked for at the terminal; never a flag value."""
    import getpass

    if path:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"--passphrase_file {path!r} is not a readable file")
        return file.read_text(encoding="utf-8").splitlines()[0].strip() if file.stat().st_size else ""
    if not sys.stdin.isatty():
        raise ConfigError("give the passphrase in a file (--passphrase_file) or run at a terminal to be asked")
    return getpass.getpass("bundle passphrase: ")


def table(headers: list[str], rows: list[list]) -> str:
    """Rows under a header line, columns aligned (plain text, for list commands)."""
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)
