"""Portal views, one module per area. Views are thin: they call services and selectors of lower layers."""
