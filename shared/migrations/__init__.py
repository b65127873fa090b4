"""Alembic migrations; `shared.migrations.runner` applies them from code and the CLI."""
