"""Thin adapters from wire protocols to ``services.api.Api``; no business logic lives here."""
