"""The stages of the papers, one module each, wiring parts together; each exposes run(c)."""
