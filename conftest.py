"""Fixtures shared by every pytest module (tests_py/ and tools/sqlc_psycopg/tests/): keen_dev."""

pytest_plugins = ["keen_dev.databases"]
