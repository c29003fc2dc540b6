"""Entry point of the sqlc process plugin: request on stdin, files on stdout."""

from __future__ import annotations

import sys

from sqlc_psycopg import options, plan, protocol, render, schema_sql
from sqlc_psycopg.errors import PluginError


def generate(request: protocol.Request) -> dict[str, str]:
    """Return the files (name → text) of the package generated for `request`."""
    opts = options.parse(request.plugin_options)
    found = schema_sql.read(request.schema_paths)
    sources = schema_sql.query_sources(request.query_paths)
    return render.render(plan.build(request, opts, found, sources))


def main() -> None:
    """Run the plugin; errors in the input exit with status 1 and a message on stderr."""
    try:
        request = protocol.Request.from_json(sys.stdin.buffer.read())
        files = generate(request)
    except PluginError as exc:
        sys.stderr.write(f"sqlc-gen-psycopg: {exc}\n")
        raise SystemExit(1) from None
    sys.stdout.write(protocol.encode_response(files))


if __name__ == "__main__":
    main()
