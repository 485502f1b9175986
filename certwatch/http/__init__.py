"""The HTTP API (Quart-Trio on Hypercorn): :mod:`.app` builds the application, request
bodies are read in :mod:`.requests`, answers are shaped in :mod:`.responses`."""
