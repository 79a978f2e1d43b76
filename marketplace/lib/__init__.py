"""Shared plumbing under the areas: settings, database, problems, observability, bodies, rate limits, health."""
