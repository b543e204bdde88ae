"""Loaded by subprocesses of the tests (via PYTHONPATH): refuse every non-loopback connection."""

import os

if os.environ.get("CCPIPE_BLOCK_NETWORK") == "1":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from netguard import block_network

    block_network()
