"""Built-in projections: one module per table family (see chronicle.projection)."""
