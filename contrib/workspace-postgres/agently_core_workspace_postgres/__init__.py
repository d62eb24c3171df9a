"""agently-core-workspace-postgres: the ``postgres`` workspace backend (PostgreSQL through
psycopg 3), safe across processes, connections and hosts."""
