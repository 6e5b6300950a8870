"""Fault matrix, soak, fuzz and security tests (issue 8); see docs/reliability.md."""
