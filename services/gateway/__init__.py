"""Gateway: the single public entry (auth, areas, REST routing, websockets, pages)."""
