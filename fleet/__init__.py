"""The city's fleet: clustered broker set-up and ACLs, the central collector into PostgreSQL, the report,
fleet metrics, the load and failure test (fleet/README.md)."""
