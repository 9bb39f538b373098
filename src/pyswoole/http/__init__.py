"""HTTP/1.1 for pyswoole, the sans-IO half: bytes in, events and bytes out, no sockets.

- ``parser``: the request parser (one per connection), its events, the collector of whole requests and the
  compact codec that ships a parsed request from a reactor to a worker.
- ``request``: the public ``Request``, every accessor parsed on first use; ``forms`` parses query strings,
  url-encoded and multipart bodies and cookies by Swoole's (PHP's) rules.
- ``response``: the public ``Response``, a state machine that writes through an injected sink.
- ``headers``: what responses share: reason phrases, the cached Date, header and cookie formatting.
- ``static``: the static file handler's decisions (which file, which status, which range), never the I/O.
- ``options``: the HTTP settings the above read, built once by the server.
"""
