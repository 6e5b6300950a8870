"""Torrent clients: one client-neutral sink and one module per client."""
