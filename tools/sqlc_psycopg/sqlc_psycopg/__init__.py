"""sqlc-gen-psycopg: a sqlc process plugin that writes typed psycopg 3 code.

sqlc runs it with `format: json`; it reads the codegen request on stdin and answers with the
files of a Python package. See docs/sqlc_plugin.md.
"""

__version__ = "0.1.0"
