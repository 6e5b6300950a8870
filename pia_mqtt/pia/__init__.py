"""PIA: the API client, its verified transport and TLS, the lease, and the lease manager."""
