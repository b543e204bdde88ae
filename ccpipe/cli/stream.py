"""``ccpipe stream``: the streaming pipeline from Kafka or a watched folder, on Prism, until stopped.

Ctrl-C (SIGINT) or SIGTERM drains the job and ends it with a summary (``pipelines.stream``): exit 0
when every record it admitted was written or dead-lettered, 3 when ``--drain_seconds`` passed with
records in flight (the next run reads them again), 130/143 when a second signal cut the drain
short, 1 when the job failed on its own, 2 for a configuration error (before the job starts).
"""

from __future__ import annotations

import sys

from ccpipe.cli.batch import strict_args
from ccpipe.cli.common import Parser


def main(argv: list[str]) -> int:
    """Run the streaming pipeline until it is stopped; print its summary; the exit code."""
    from pipelines.batch import BatchOptions, common_from_options
    from pipelines.stream import StreamConfig, run, stream_options

    parser = Parser(
        prog="ccpipe stream",
        description="Run the streaming pipeline (kafka://HOST:PORT/TOPIC?group=G or watch://DIR) until stopped. "
        "Ctrl-C or SIGTERM drains it and prints a summary (also written to "
        "<output>/_manifests/stream-<start>-<id>.json). Exit 0: stopped and drained; 3: drain bound passed "
        "with records in flight (read again next run); 130/143: a second signal; 1: the job failed; "
        "2: configuration error.",
    )
    BatchOptions._add_argparse_args(parser)
    parser.add_argument("--source", required=True, help="kafka://HOST:PORT/TOPIC?group=NAME or watch://DIR")
    parser.add_argument("--runner", default="PrismRunner", help="PrismRunner (default) or FlinkRunner, ...")
    parser.add_argument("--prism_location", help="Prism binary (default .cache/bin/prism, built by 'make prism')")
    parser.add_argument("--window_seconds", type=float, default=2.0, help="write windows (arrival time)")
    parser.add_argument("--status_seconds", type=float, default=30.0,
                        help="a status line with the counts so far on stderr every this many seconds (0: none)")
    parser.add_argument("--drain_seconds", type=float, default=60.0,
                        help="on SIGINT/SIGTERM, how long records already read may take to be written (and "
                        "their Kafka offsets committed) before the job is cancelled")
    args, argv, beam_flags = strict_args(parser, argv)
    options = BatchOptions(argv)
    common = common_from_options(options.view_as(BatchOptions), streaming=True)
    config = StreamConfig(source=args.source, processing=common, window_seconds=args.window_seconds,
                          status_seconds=args.status_seconds, drain_seconds=args.drain_seconds)
    outcome = run(config, stream_options(args.runner, args.prism_location, beam_flags))
    print(outcome.line, flush=True)
    if outcome.exit_code:
        print(f"ccpipe stream: exit {outcome.exit_code}", file=sys.stderr, flush=True)
    return outcome.exit_code
