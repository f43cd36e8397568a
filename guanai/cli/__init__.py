"""``guanai``: the command line (``guanai.cli.main``) and its command groups."""
