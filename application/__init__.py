"""The command side: use cases over the domain (commands, queries, ports); no I/O of its own."""
