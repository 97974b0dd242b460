"""PostgreSQL with work deferred to the moment before commit (``base.DatabaseWrapper``)."""
