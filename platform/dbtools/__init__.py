"""Database plumbing, the lowest layer: backend checks, named advisory locks, COPY.

Layer 0: it imports Django and the standard library only, never an app, so every layer may use it. Three
modules, one concern each:

- `backend`: "are we on PostgreSQL" (`on_postgresql()`), the one place that asks Django for the vendor;
- `locks`: every PostgreSQL advisory lock of the platform, declared in one registry that refuses a second lock
  with the same name or number, and no-ops on SQLite (a single writer, nothing to lock);
- `pgcopy`: binary and text COPY, COPY through a temporary staging table, and packed reads into numpy.
"""
