"""The web client: pages under /app served by the API's Litestar app."""
