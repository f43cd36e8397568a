"""The HTTP API (Litestar): thin controllers over the command side and the views."""
