"""Stand-ins for tests, benchmarks and tools: an OpenAI-compatible stub server and scripted models.

The engine never imports this package."""
