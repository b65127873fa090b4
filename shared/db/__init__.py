"""Database models, types and engine/session factories shared by the services."""
