"""WebSocket (RFC 6455, RFC 7692): the sans-IO half of ``WebSocketServer``.

``frames`` encodes frames and holds ``Frame``, ``CloseFrame``, ``Opcode`` and Swoole's flag and close-code
constants; ``parser`` turns a connection's bytes into whole messages and control events; ``deflate``
negotiates and runs permessage-deflate; ``handshake`` checks an upgrade request and builds the 101 (or 4xx)
response; ``_mask`` is the C masking routine. Nothing here touches a socket, a loop or a thread: the server's
glue feeds bytes in and writes the bytes it gets back.
"""
