"""The project's common library: what several services use."""
