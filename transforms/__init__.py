"""ccpipe's Beam stages: thin composite PTransforms around the domain modules in ``ccpipe``.

Each stage is a verb (``ParseRecords``, ``ResolveTenants``, ``TagPii``, ``Pseudonymize``,
``EncryptContent``, ``RouteToRegion``, ``WriteRegionalParquet``...); stages with a dead-letter
output return a NamedTuple ``(records|rows, dead_letters)``.
"""
