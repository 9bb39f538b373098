"""A module whose ``app`` is neither an ASGI nor a WSGI application."""

app = 42


def three(a, b, c):
    return None
