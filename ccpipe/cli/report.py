"""``ccpipe report RUN_ID --output ROOT [--sample N]``: (re)build a batch run's report and its JSON twin."""

from __future__ import annotations

from ccpipe.errors import ConfigError

DESCRIPTION = (
    "Build the report of a batch run from its manifest, its saved Beam metrics and its Parquet files: "
    "<ROOT>/_reports/<RUN_ID>.html (opens offline) and <RUN_ID>.json. Counts only, never a value."
)


def _sample(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--sample {text!r} must be a whole number of rows per dataset, 0 or more") from None
    if value < 0:
        raise ConfigError(f"--sample {text!r} must be a whole number of rows per dataset, 0 or more")
    return value


def main(argv: list[str]) -> int:
    """Parse the flags, write the report, print where it is; errors raise CcpipeError (one line)."""
    from ccpipe.cli.common import Parser
    from ccpipe.report import DEFAULT_SAMPLE_ROWS, write_run_report

    parser = Parser(prog="ccpipe report", description=DESCRIPTION)
    parser.add_argument("run_id", metavar="RUN_ID",
                        help="the run's id (its manifest is <ROOT>/_manifests/<RUN_ID>.json)")
    parser.add_argument("--output", required=True, metavar="ROOT", help="the run's output root (sink root)")
    parser.add_argument("--sample", default=str(DEFAULT_SAMPLE_ROWS), metavar="N",
                        help="rows per dataset for the residual-PII check, 0 to skip it "
                        f"(default {DEFAULT_SAMPLE_ROWS})")
    args = parser.parse_args(argv)
    root = args.output if "://" in args.output else _absolute(args.output)
    paths = write_run_report(root, args.run_id, _sample(args.sample))
    print(f"report: {paths.html}")
    print(f"report (JSON): {paths.json}")
    return 0


def _absolute(path: str) -> str:
    import os

    return os.path.abspath(path)
