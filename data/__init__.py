"""Data chronicle ships (installed as chronicle.data): taxonomies and the demo's examples."""
