"""One module per subcommand; each exposes ``register(app)``. cli.py discovers them."""
