"""The control plane: tenants, grants, key events, data-subject requests and the audit log.

SQLite by default (``$CCPIPE_HOME/control.db``), PostgreSQL through a ``postgresql://`` URL. The
schema is created and upgraded by versioned migrations (``migrations.py``).
"""
