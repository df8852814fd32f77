"""The ``warmstart`` command line: one module per subcommand, each thin (parse, call, print)."""
