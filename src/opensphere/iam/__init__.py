"""Identity: subjects and the credentials that prove who is calling."""
