"""Examples of keen-sql use: run from the checkout, not part of the keen-sql wheel."""
