"""LLM experiments: ids, definitions, cohorts, prompt rendering, the LLM client, parsers and the runner."""
