"""The `cvae` command: `main.py` builds the parser and runs a subcommand;
`arguments.py` holds the option types and groups the commands share; each
family of subcommands has a module (`codec.py`: compress, decompress,
calibrate; `explore.py`: generate, interpolate, traverse, attribute, edit,
latent-stats). Heavy libraries load only when a command runs."""

from cvae.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
