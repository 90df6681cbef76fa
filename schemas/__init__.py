"""Wire types of every topic: decode and validate with precise reasons, encode."""
