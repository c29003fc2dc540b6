"""The one exception of the plugin: errors in its input, reported by sqlc with exit status 1."""

from __future__ import annotations


class PluginError(Exception):
    """An error in the schema, the queries or the options; the message names where it is."""
