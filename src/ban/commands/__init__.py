"""The `ban` command's subcommands, one module each (parse, call the API, print)."""
