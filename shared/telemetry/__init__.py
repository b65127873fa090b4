"""Operability: Prometheus metrics (`metrics.py`, `/metrics` from `scrape.py`), the HTTP
middleware that times requests and carries the request id (`http.py`), and the request id's
context (`request_id.py`). See docs/observability.md and docs/decisions/0018-observability.md."""
