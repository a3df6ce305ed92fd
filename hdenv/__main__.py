"""`python -m hdenv`: what the shell function runs for pass-through subcommands,
so it works with the interpreter `hdenv init` recorded, whatever PATH says."""

from .cli.main import main

main()
