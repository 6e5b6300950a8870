"""Finding the PIA gateway: candidate ranking (pure), reading the system, probing."""
