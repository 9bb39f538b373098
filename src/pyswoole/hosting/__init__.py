"""Hosting Python web applications: ASGI (``asgi``) and WSGI (``wsgi``) on the HTTP and WebSocket servers, the
choice between them (``mount``), and the ``pyswoole serve`` command that builds a server around an application."""
