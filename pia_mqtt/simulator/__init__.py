"""The PIA look-alike (real HTTPS, a CA made like PIA's) and the demo built on it."""
