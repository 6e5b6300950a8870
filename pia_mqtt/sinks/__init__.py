"""Local sinks: the port files and the port-change hook."""
