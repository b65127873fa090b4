"""Dispatch: tickets from events, ownership, lifecycle and timers."""
