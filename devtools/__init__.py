"""Development tools, not shipped in the image: the raw-data generator (``devtools.generate``)."""
