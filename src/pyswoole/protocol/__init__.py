"""Per-port byte handling of a plain TCP/UDP server: package ``framing`` (sans-IO), ``tls`` contexts, and
zero-copy ``sendfile``. HTTP and WebSocket, protocols of their own, have their own rooms."""
