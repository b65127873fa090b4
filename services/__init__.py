"""The four cityhub services and the CLI that runs them."""
