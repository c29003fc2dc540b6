"""The demonstration that `make run` runs: an example, not production code.

`python -m examples.demo [--database-url URL]` (from the checkout) migrates the database,
summarises its schema and runs every capability of keen-sql through the Python API
(showcase.py). It is not part of the keen-sql wheel.
"""
