"""Examples that live next to the widget service (not shipped in the package)."""
