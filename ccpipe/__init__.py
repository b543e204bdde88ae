"""ccpipe: a contact-center data pipeline with privacy controls, on Apache Beam.

Beam-free domain logic lives in this package (types, schemas, crypto, keystore,
pseudonyms, PII tagging, policy, manifest); the Beam stages are in ``transforms``
and the pipelines in ``pipelines``. Run ``ccpipe --help`` for the command line.
"""

__version__ = "0.1.0"
