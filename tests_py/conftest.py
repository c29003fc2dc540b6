"""Fixtures shared by every pytest module: see tests_py/support/."""

pytest_plugins = ["tests_py.support.databases"]
