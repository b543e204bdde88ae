"""``ccpipe stream``: the streaming pipeline from Kafka or a watched folder, on Prism, until stopped."""

from __future__ import annotations

from ccpipe.cli.batch import strict_args
from ccpipe.cli.common import Parser


def main(argv: list[str]) -> int:
    """Run the streaming pipeline until it is stopped."""
    from pipelines.batch import BatchOptions, common_from_options
    from pipelines.stream import StreamConfig, run, stream_options

    parser = Parser(
        prog="ccpipe stream",
        description="Run the streaming pipeline (kafka://HOST:PORT/TOPIC?group=G or watch://DIR) until stopped.",
    )
    BatchOptions._add_argparse_args(parser)
    parser.add_argument("--source", required=True, help="kafka://HOST:PORT/TOPIC?group=NAME or watch://DIR")
    parser.add_argument("--runner", default="PrismRunner", help="PrismRunner (default) or FlinkRunner, ...")
    parser.add_argument("--prism_location", help="Prism binary (default .cache/bin/prism, built by 'make prism')")
    parser.add_argument("--window_seconds", type=float, default=2.0, help="write windows (arrival time)")
    args, argv, beam_flags = strict_args(parser, argv)
    options = BatchOptions(argv)
    common = common_from_options(options.view_as(BatchOptions), streaming=True)
    config = StreamConfig(source=args.source, processing=common, window_seconds=args.window_seconds)
    run(config, stream_options(args.runner, args.prism_location, beam_flags))
    return 0
